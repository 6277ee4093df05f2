"""Delayed delivery: messages that enter a stream after N milliseconds.

Each target stream has a sorted set of waiting entries in the same hash slot
(see :meth:`Keys.delayed`), so one script moves due entries atomically: a
mover that crashes mid-move loses and duplicates nothing. Due times come from
the Redis clock, never a host's.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from streamcart.bus.envelope import Fields
from streamcart.bus.keys import Keys
from streamcart.bus.scripts import Script

_schedule = Script("schedule.lua")
_move_due = Script("move_due.lua")


async def schedule(redis: Redis, keys: Keys, stream: str, fields: Fields, delay_ms: int) -> int:
    """Deliver ``fields`` to ``stream`` after ``delay_ms``; returns the due time (Unix ms)."""
    # Index first: a mover that sees the index but not yet the entry just moves nothing.
    await redis.sadd(keys.delayed_index(), stream)
    member = json.dumps([item for pair in fields.items() for item in pair])
    return int(await _schedule(redis, [keys.delayed(stream)], [max(0, delay_ms), member]))


async def move_due(redis: Redis, keys: Keys, *, batch: int = 500) -> int:
    """Move every due entry of every delayed set into its stream; returns how many."""
    streams = sorted(await redis.smembers(keys.delayed_index()))
    if not streams:
        return 0
    calls = [([keys.delayed(stream), stream], [batch]) for stream in streams]
    return sum(int(count) for count in await _move_due.run_many(redis, calls))


async def pending_delayed(redis: Redis, keys: Keys, stream: str) -> int:
    """How many entries are still waiting to enter ``stream``."""
    return int(await redis.zcard(keys.delayed(stream)))
