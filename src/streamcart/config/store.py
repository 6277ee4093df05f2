"""The Redis-backed config store: scopes of JSON values, one version, a history.

A scope is ``global`` or a service name; each is a hash of key -> JSON text, so
an operator can read it with ``redis-cli HGETALL``. Every change goes through
one script that updates the scope, bumps the version and appends to the
history atomically (all three keys share a hash tag). The store then emits a
``config.changed`` event and publishes the new version; pub/sub only wakes
workers early, since they also poll the version (PITFALLS 12).
"""

from __future__ import annotations

import builtins
import re
from typing import Any

import msgspec
from redis.asyncio import Redis

from streamcart.bus.connection import transaction
from streamcart.bus.envelope import build_fields
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.scripts import Script
from streamcart.errors import ConfigurationError, InvalidConfigError

GLOBAL = "global"
CHANGED = "config.changed"
HISTORY_MAXLEN = 10_000

_change = Script("change.lua", "streamcart.config")
_SCOPE = re.compile(r"^[a-z][a-z0-9_-]*$")
_HISTORY_PAGE = 200


class ConfigChange(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded change. ``old`` and ``new`` are the JSON texts, ``None``
    when the key was not set before / was unset; ``at_ms`` is Redis time."""

    version: int
    scope: str
    key: str
    old: str | None
    new: str | None
    at_ms: int
    entry_id: str


class Snapshot(msgspec.Struct, frozen=True):
    """Scopes read in one transaction, with the version they belong to."""

    version: int
    scopes: dict[str, dict[str, Any]]


def encode_value(value: Any) -> str:
    """The JSON text a value is stored as; dict keys sorted, so that setting an
    equal value is recognised as no change."""
    return msgspec.json.encode(value, order="sorted").decode()


def decode_value(text: str) -> Any:
    """A stored value: JSON, or the text itself when it is not JSON (a value
    written by hand with redis-cli, ``HSET ... greeting hello``)."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


class ConfigStore:
    """Reads and changes the config of every scope under one namespace.

    Every method given a scope raises :class:`ConfigurationError` when it is
    neither ``global`` nor a well-formed service name.
    """

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def get(self, scope: str, key: str) -> Any | None:
        """The value stored for ``key`` in ``scope``; ``None`` when unset."""
        raw = await self.redis.hget(self.keys.config_scope(_checked(scope)), key)
        return None if raw is None else decode_value(raw)

    async def list(self, scope: str) -> dict[str, Any]:
        """Every value stored in ``scope`` (defaults are not stored)."""
        raw = await self.redis.hgetall(self.keys.config_scope(_checked(scope)))
        return {key: decode_value(text) for key, text in sorted(raw.items())}

    async def version(self) -> int:
        """The number of changes ever made: workers compare it with theirs."""
        return int(await self.redis.get(self.keys.config_version()) or 0)

    async def snapshot(self, *scopes: str) -> Snapshot:
        """The version and the given scopes, read atomically (one slot, one MULTI)."""
        version_key = self.keys.config_version()
        async with await transaction(self.redis, version_key) as pipe:
            pipe.get(version_key)
            for scope in scopes:
                pipe.hgetall(self.keys.config_scope(_checked(scope)))
            version, *hashes = await pipe.execute()
        values = {
            scope: {key: decode_value(text) for key, text in raw.items()}
            for scope, raw in zip(scopes, hashes, strict=True)
        }
        return Snapshot(int(version or 0), values)

    async def set(self, scope: str, key: str, value: Any) -> int:
        """Store ``value`` (validate it first, see :func:`resolve.validate`);
        returns the version after the change. Setting the current value is a
        no-op that returns the current version.

        Raises:
            ConfigurationError: a malformed scope or an empty key.
            InvalidConfigError: a ``ServiceOptions`` key with a value it refuses
                (out of its range, say): never stored, even by a caller that
                did not validate it.
        """
        _check_option(scope, key, value)
        return await self._change(scope, key, encode_value(value))

    async def unset(self, scope: str, key: str) -> int:
        """Remove ``key`` from ``scope`` so the next layer's value applies;
        returns the version after the change (unchanged when it was not set).

        Raises:
            ConfigurationError: a malformed scope or an empty key.
        """
        return await self._change(scope, key, "")

    async def history(
        self, scope: str | None = None, count: int = 50
    ) -> builtins.list[ConfigChange]:
        """The last ``count`` changes, newest first; of one scope, or of all."""
        changes: builtins.list[ConfigChange] = []
        end = "+"
        while len(changes) < count:
            page = await self.redis.xrevrange(self.keys.config_history(), end, "-", _HISTORY_PAGE)
            for entry_id, fields in page:
                if scope is None or fields.get("scope") == scope:
                    changes.append(_change_of(entry_id, fields))
            if len(page) < _HISTORY_PAGE:
                break
            end = f"({page[-1][0]}"
        return changes[:count]

    async def _change(self, scope: str, key: str, new: str) -> int:
        if not key:
            raise ConfigurationError("a config key must not be empty")
        keys = [
            self.keys.config_scope(_checked(scope)),
            self.keys.config_version(),
            self.keys.config_history(),
        ]
        version, changed, old = await _change(self.redis, keys, [scope, key, new, HISTORY_MAXLEN])
        version = int(version)
        if int(changed):
            await self._announce(scope, key, old, new, version)
        return version

    async def _announce(self, scope: str, key: str, old: str, new: str, version: int) -> None:
        # After the script, not in it: the topic stream lives in another slot.
        # Losing this (a crash right here) loses no change: workers poll the version.
        data = {
            "scope": scope,
            "key": key,
            "old": decode_value(old) if old else None,
            "new": decode_value(new) if new else None,
            "version": version,
        }
        await self.redis.xadd(self.keys.stream_for(CHANGED), build_fields(CHANGED, data))
        await self.redis.publish(self.keys.config_channel(), str(version))


def _check_option(scope: str, key: str, value: Any) -> None:
    if key not in ServiceOptions.__struct_fields__:
        return
    try:
        msgspec.convert({key: value}, ServiceOptions)
    except msgspec.ValidationError as exc:
        raise InvalidConfigError(
            f"invalid value for {key!r} in scope {scope!r}: {exc}", scope=scope, key=key
        ) from None


def _checked(scope: str) -> str:
    if not _SCOPE.match(scope):
        raise ConfigurationError(
            f"config scope {scope!r} must be {GLOBAL!r} or a service name "
            "(lower-case letters, digits, '_' or '-')"
        )
    return scope


def _change_of(entry_id: str, fields: dict[str, str]) -> ConfigChange:
    return ConfigChange(
        version=int(fields.get("version", 0)),
        scope=fields.get("scope", ""),
        key=fields.get("key", ""),
        old=fields.get("old") or None,
        new=fields.get("new") or None,
        at_ms=int(fields.get("at", 0)),
        entry_id=entry_id,
    )
