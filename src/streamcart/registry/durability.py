"""How durably the server keeps what it acknowledged: its AOF and when it is fsynced.

With ``appendfsync always`` a write is on disk before the client hears of it, so an
OS crash loses nothing a client was told about (a 202's order, an RPC reply);
``everysec`` loses up to about the last second of them, ``no`` whatever the OS had not
written out, and a server without the AOF everything since its last snapshot. The
mode is read from the server itself (``CONFIG GET``); where CONFIG is refused (an ACL
user without it, a managed Redis) it is ``unknown`` rather than an error.
"""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

# Weakest first: a cluster is as durable as its least durable primary.
MODES = ("unknown", "off", "no", "everysec", "always")
_SAYS = {
    "always": "every acknowledged write is on disk before its reply",
    "everysec": "an OS crash loses up to a second of acknowledged writes",
    "no": "an OS crash loses what the OS had not written out",
    "off": "no AOF: a crash loses every write since the last snapshot",
    "unknown": "the server refuses CONFIG GET appendonly/appendfsync",
}


class Durability(msgspec.Struct, frozen=True, kw_only=True):
    """``mode``: ``always``, ``everysec`` or ``no`` (the AOF's fsync policy), ``off``
    (no AOF) or ``unknown``; ``appendonly`` and ``appendfsync`` as the server reports
    them (None where it would not say)."""

    mode: str = "unknown"
    appendonly: str | None = None
    appendfsync: str | None = None

    @property
    def meaning(self) -> str:
        """What the mode means for acknowledged writes, in words."""
        return _SAYS[self.mode]


def durability_of(config: dict[str, Any]) -> Durability:
    """The durability a ``CONFIG GET append*`` reply describes."""
    appendonly, appendfsync = config.get("appendonly"), config.get("appendfsync")
    if appendonly == "no":
        mode = "off"
    elif appendonly == "yes" and appendfsync in MODES:
        mode = appendfsync
    else:
        mode = "unknown"
    return Durability(mode=mode, appendonly=appendonly, appendfsync=appendfsync)


async def read_durability(redis: Redis) -> Durability:
    """The server's durability; on a cluster, that of its least durable primary."""
    try:
        if isinstance(redis, RedisCluster):
            await redis.initialize()  # knows every primary once it has asked one
            found = [
                durability_of(await redis.config_get("append*", target_nodes=node))
                for node in redis.get_primaries()
            ]
            return min(found, key=lambda d: MODES.index(d.mode), default=Durability())
        return durability_of(await redis.config_get("append*"))
    except ResponseError:  # NOPERM, or CONFIG renamed away
        return Durability()
