"""Which config applies to a service, and whether a new value is acceptable.

Layers, lowest first: the service's declared defaults (its ``ServiceOptions``
and the defaults of its ``settings`` Struct), then the global scope, then the
service's own scope. A key of the global scope applies to the ``ServiceOptions``
field of that name (and to a settings field of the same name); a key of a
service scope must be a field of one or the other.

Values are checked by converting the whole Struct, so a type's
``__post_init__`` checks (``claim_timeout_ms`` at least 100, ...) run too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, TypeVar

import msgspec

from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.config.store import GLOBAL
from streamcart.errors import InvalidConfigError

S = TypeVar("S", bound=msgspec.Struct)
OnInvalid = Callable[[InvalidConfigError], None]
# (scope, key, value): one stored value to lay over the defaults.
Change = tuple[str, str, Any]

DEFAULT, FROM_GLOBAL, FROM_SERVICE = "default", "global", "service"
_PLAIN_MISMATCH = re.compile(r"^Expected `[^`]*`, got `[^`]*`$")


class Setting(msgspec.Struct, frozen=True):
    """One effective value and the layer it comes from."""

    key: str
    value: Any
    source: str


def valid_keys(service: Service | None) -> list[str]:
    """The keys a scope accepts: ``ServiceOptions`` fields, plus the service's settings."""
    keys = set(_fields(ServiceOptions))
    if service is not None and service.settings_type is not None:
        keys.update(_fields(service.settings_type))
    return sorted(keys)


def check_key(service: Service | None, key: str) -> None:
    """Raises:
    InvalidConfigError: ``key`` is not a key of the scope; the message lists
        the valid ones and suggests a close match.
    """
    if key not in valid_keys(service):
        raise _unknown(service.name if service is not None else GLOBAL, key, service)


def effective(
    service: Service | None,
    global_values: Mapping[str, Any],
    service_values: Mapping[str, Any],
    *,
    on_invalid: OnInvalid | None = None,
) -> tuple[ServiceOptions, msgspec.Struct | None]:
    """The options and settings instance that apply: defaults <- global <- service.

    With ``on_invalid``, an unknown key or a refused value is reported to it
    and skipped, and everything else still applies (a worker must not stop
    over a value written by hand); without it, the first one is raised.

    Raises:
        InvalidConfigError: an unknown key or an invalid value, when no
            ``on_invalid`` is given.
    """
    report = on_invalid or _raise
    settings_type = service.settings_type if service is not None else None
    option_fields = set(_fields(ServiceOptions))
    settings_fields = set(_fields(settings_type)) if settings_type is not None else set()
    option_changes: list[Change] = []
    settings_changes: list[Change] = []
    layers = [(GLOBAL, global_values)]
    if service is not None:
        layers.append((service.name, service_values))
    for scope, values in layers:
        for key, value in values.items():
            if key in option_fields:
                option_changes.append((scope, key, value))
            if key in settings_fields:
                settings_changes.append((scope, key, value))
            if key not in option_fields and key not in settings_fields:
                report(_unknown(scope, key, service if scope != GLOBAL else None))
    options = _layered(service.options if service else ServiceOptions(), option_changes, report)
    settings = None
    if settings_type is not None:
        settings = _layered(settings_type(), settings_changes, report)
    return options, settings


def describe(
    service: Service | None,
    global_values: Mapping[str, Any],
    service_values: Mapping[str, Any],
    *,
    on_invalid: OnInvalid | None = None,
) -> list[Setting]:
    """Every key of the scope with its effective value and where it comes from.

    Raises:
        InvalidConfigError: as :func:`effective`, when no ``on_invalid`` is given.
    """
    skipped: set[tuple[str, str]] = set()

    def note(error: InvalidConfigError) -> None:
        skipped.add((error.scope, error.key))
        (on_invalid or _raise)(error)

    options, settings = effective(service, global_values, service_values, on_invalid=note)
    scope = service.name if service is not None else GLOBAL
    option_keys = _fields(ServiceOptions)
    settings_keys = _fields(type(settings)) if settings is not None else ()
    rows = []
    for key in (*option_keys, *(k for k in settings_keys if k not in option_keys)):
        value = getattr(options if key in option_keys else settings, key)
        if service is not None and key in service_values and (scope, key) not in skipped:
            source = FROM_SERVICE
        elif key in global_values and (GLOBAL, key) not in skipped:
            source = FROM_GLOBAL
        else:
            source = DEFAULT
        rows.append(Setting(key, value, source))
    return rows


def validate(service: Service | None, key: str, raw_text: str) -> Any:
    """The value ``raw_text`` (as typed on a command line) stands for, checked
    against the type of ``key`` in the service's scope, or the global scope.

    The text is read as JSON when it parses (``3``, ``true``, ``[1, 2]``,
    ``"a b"``), else as a string; a JSON reading the field's type refuses is
    tried as a plain string too (``05`` for a ``str`` field).

    Raises:
        InvalidConfigError: an unknown key (the message lists the valid ones and
            suggests a close match) or a value the type refuses (it names the
            key, the expected type and the value).
    """
    scope = service.name if service is not None else GLOBAL
    bases: list[msgspec.Struct] = []
    if key in _fields(ServiceOptions):
        bases.append(service.options if service is not None else ServiceOptions())
    settings_type = service.settings_type if service is not None else None
    if settings_type is not None and key in _fields(settings_type):
        bases.append(settings_type())
    if not bases:
        raise _unknown(scope, key, service)
    errors: list[InvalidConfigError] = []
    for value in _readings(raw_text):
        error = _refusal(scope, key, value, bases)
        if error is None:
            return getattr(_replaced(bases[0], {key: value}), key)
        errors.append(error)
    raise errors[0]  # the JSON reading's complaint: what the user most likely meant


def _refusal(
    scope: str, key: str, value: Any, bases: list[msgspec.Struct]
) -> InvalidConfigError | None:
    for base in bases:
        try:
            _replaced(base, {key: value})
        except msgspec.ValidationError as exc:
            return _invalid(scope, key, value, type(base), exc)
    return None


def _readings(raw_text: str) -> list[Any]:
    try:
        decoded = msgspec.json.decode(raw_text)
    except msgspec.DecodeError:
        return [raw_text]
    return [decoded] if decoded == raw_text else [decoded, raw_text]


def _layered(base: S, changes: list[Change], report: OnInvalid) -> S:
    """``base`` with the changes applied, later ones winning; a change the
    type refuses is reported and left out."""
    if not changes:
        return base
    try:
        return _replaced(base, {key: value for _, key, value in changes})
    except msgspec.ValidationError:
        pass
    # One at a time, to tell which values are refused and keep the others.
    result = base
    for scope, key, value in changes:
        try:
            result = _replaced(result, {key: value})
        except msgspec.ValidationError as exc:
            report(_invalid(scope, key, value, type(base), exc))
    return result


def _replaced(base: S, values: Mapping[str, Any]) -> S:
    """A new instance with ``values`` swapped in, fully validated (``__post_init__`` too)."""
    merged = SimpleNamespace(**{**msgspec.structs.asdict(base), **values})
    return msgspec.convert(merged, type(base), from_attributes=True)


def _fields(struct_type: type[msgspec.Struct]) -> tuple[str, ...]:
    return struct_type.__struct_fields__


def _where(scope: str) -> str:
    return "the global scope" if scope == GLOBAL else f"service {scope!r}"


def _unknown(scope: str, key: str, service: Service | None) -> InvalidConfigError:
    valid = valid_keys(service)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return InvalidConfigError(
        f"unknown config key {key!r} for {_where(scope)}{hint} Valid keys: {', '.join(valid)}",
        scope=scope,
        key=key,
    )


def _invalid(
    scope: str,
    key: str,
    value: Any,
    struct_type: type[msgspec.Struct],
    exc: msgspec.ValidationError,
) -> InvalidConfigError:
    expected = next(f.type for f in msgspec.structs.fields(struct_type) if f.name == key)
    detail = re.sub(rf" - at `\$\.{re.escape(key)}`$", "", str(exc))
    # msgspec's own "Expected `int`, got `str`" says nothing the message does not.
    why = "" if _PLAIN_MISMATCH.match(detail) else f" ({detail})"
    return InvalidConfigError(
        f"invalid value for {key!r} in {_where(scope)}: expected {_type_name(expected)}, "
        f"got {value!r}{why}",
        scope=scope,
        key=key,
    )


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _raise(error: InvalidConfigError) -> None:
    raise error
