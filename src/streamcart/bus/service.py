"""The ``Service`` API: an actor type and its handlers.

A service owns its state (keys in its own hash slot) and reacts to messages::

    counter = Service("counter")

    class Increment(msgspec.Struct):
        name: str
        by: int = 1

    @counter.on("counter.increment")
    async def increment(msg: Increment, ctx: Context) -> None:
        ctx.tx.hincrby(ctx.key("counts"), msg.name, msg.by)
        ctx.publish("counter.incremented", {"name": msg.name})

A type whose first segment is the service's name is a command, read from the
service inbox; any other type is an event, read from its topic stream through
the service's own consumer group. ``"topic.*"`` subscribes to a whole topic.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec

from streamcart.bus.envelope import PayloadDecoder
from streamcart.bus.keys import Keys, topic_of
from streamcart.bus.options import ServiceOptions
from streamcart.errors import ConfigurationError

if typing.TYPE_CHECKING:
    from streamcart.bus.context import Context

# A handler returns None, or for a request the reply (a Struct, dict, list or scalar).
HandlerFunc = Callable[[Any, "Context"], Awaitable[Any]]
H = typing.TypeVar("H", bound=HandlerFunc)

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
# "global" is the config store's global scope; "config" its hash slot {<ns>:config}.
RESERVED = frozenset({"global", "config"})
_TYPE = re.compile(r"^[a-z][a-z0-9_-]*\.([a-z][a-z0-9_]*|\*)$")


class Handler(msgspec.Struct, frozen=True):
    """A registered handler: the type it answers and how to decode its payload."""

    pattern: str
    func: HandlerFunc
    decoder: PayloadDecoder


class Service:
    """An actor type: a name, options and handlers per message type."""

    def __init__(
        self,
        name: str,
        *,
        options: ServiceOptions | None = None,
        settings: type[msgspec.Struct] | None = None,
    ) -> None:
        """``settings`` declares the service's own config knobs: a Struct whose
        fields all have defaults; handlers read the current one as ``ctx.config``.

        Raises:
            ConfigurationError: a malformed name, or ``settings`` that is not a
                Struct type buildable from its defaults.
        """
        if not _NAME.match(name):
            raise ConfigurationError(
                f"service name {name!r} must be lower-case letters, digits, '_' or '-'"
            )
        if name in RESERVED:
            raise ConfigurationError(
                f"service name {name!r} is reserved (the config store uses it); pick another"
            )
        self.name = name
        self.options = options or ServiceOptions()
        self.settings_type = _checked_settings(name, settings)
        self._exact: dict[str, Handler] = {}
        self._wildcard: dict[str, Handler] = {}

    def __repr__(self) -> str:
        return f"Service({self.name!r}, handlers={sorted(self.patterns())})"

    def on(self, message_type: str) -> Callable[[H], H]:
        """Register the decorated ``async def handler(payload, ctx)`` for a type.

        The payload type is the annotation of the first parameter (a
        ``msgspec.Struct``, or ``dict`` for free-form data).

        Raises:
            ConfigurationError: a malformed type, a duplicate, or a handler
                that is not ``async`` or lacks a payload annotation.
        """
        if not _TYPE.match(message_type):
            raise ConfigurationError(
                f"message type {message_type!r} must look like 'topic.name' or 'topic.*'"
            )
        table = self._wildcard if message_type.endswith(".*") else self._exact
        key = topic_of(message_type) if table is self._wildcard else message_type
        if key in table:
            raise ConfigurationError(f"{self.name}: a handler for {message_type!r} exists already")

        def register(func: H) -> H:
            table[key] = Handler(message_type, func, PayloadDecoder(_payload_type(func)))
            return func

        return register

    def handler_for(self, message_type: str) -> Handler | None:
        """The handler for a type, exact match first, then ``topic.*``."""
        handler = self._exact.get(message_type)
        if handler is None and self._wildcard:
            handler = self._wildcard.get(topic_of(message_type))
        return handler

    def patterns(self) -> Iterator[str]:
        for handler in (*self._exact.values(), *self._wildcard.values()):
            yield handler.pattern

    def is_command(self, message_type: str) -> bool:
        return topic_of(message_type) == self.name

    def streams(self, keys: Keys) -> list[str]:
        """The inbox first, then every topic stream the service subscribes to."""
        topics = sorted({topic_of(p) for p in self.patterns() if not self.is_command(p)})
        return [keys.inbox(self.name), *(keys.events(topic) for topic in topics)]


def _checked_settings(
    service: str, settings: type[msgspec.Struct] | None
) -> type[msgspec.Struct] | None:
    if settings is None:
        return None
    if not (isinstance(settings, type) and issubclass(settings, msgspec.Struct)):
        raise ConfigurationError(f"{service}: settings must be a msgspec.Struct type")
    # Fail at declaration, not in a worker at 3 a.m.: the defaults are the base config.
    try:
        settings()
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{service}: settings {settings.__name__} must be buildable from its defaults "
            f"(give every field a default): {exc}"
        ) from exc
    return settings


def _payload_type(func: HandlerFunc) -> Any:
    name = getattr(func, "__qualname__", repr(func))
    if not inspect.iscoroutinefunction(func):
        raise ConfigurationError(f"handler {name} must be an `async def`")
    params = list(inspect.signature(func).parameters)
    if len(params) != 2:
        raise ConfigurationError(f"handler {name} must take (payload, ctx)")
    hints = typing.get_type_hints(func)
    if params[0] not in hints:
        raise ConfigurationError(
            f"handler {name}: annotate its first parameter with the payload type "
            "(a msgspec.Struct, or dict)"
        )
    return hints[params[0]]
