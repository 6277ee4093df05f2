"""Delayed delivery: messages that enter a stream after N milliseconds.

Each target stream has a sorted set of waiting entries in the same hash slot
(see :meth:`Keys.delayed`), so one script moves due entries atomically: a
mover that crashes mid-move loses and duplicates nothing. Due times come from
the Redis clock, never a host's. An entry that cannot enter its stream is
parked by the script and then dead-lettered with its reason, so it never
holds up the entries due after it.
"""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis

from streamcart.bus.deadletter import dead_letter_fields
from streamcart.bus.envelope import Fields
from streamcart.bus.keys import Keys
from streamcart.bus.rawtext import ENCODING_ERRORS
from streamcart.bus.scripts import Script

_schedule = Script("schedule.lua")
_move_due = Script("move_due.lua")


def encode_member(fields: Fields) -> str:
    """An entry as its delayed set keeps it: ``<byte length>:<text>`` per field
    name and value, so any bytes (see bus/rawtext.py) survive the move exactly."""
    parts = []
    for pair in fields.items():
        for text in pair:
            parts.append(f"{len(text.encode('utf-8', ENCODING_ERRORS))}:{text}")
    return "".join(parts)


def decode_member(member: str) -> Fields | None:
    """The fields of a delayed entry, or ``None`` when it is not one we can read."""
    if member.startswith("["):
        try:
            items = json.loads(member)
        except ValueError:
            return None
    else:
        data = member.encode("utf-8", ENCODING_ERRORS)
        items, at = [], 0
        while at < len(data):
            length, colon, _ = data[at : at + 20].partition(b":")
            if not colon or not length.isdigit():
                return None
            start = at + len(length) + 1
            if start + int(length) > len(data):
                return None  # a field that runs past the end
            items.append(data[start : start + int(length)].decode("utf-8", ENCODING_ERRORS))
            at = start + int(length)
    if not isinstance(items, list) or len(items) % 2:
        return None
    return {str(name): str(value) for name, value in zip(items[::2], items[1::2], strict=True)}


async def schedule(redis: Redis, keys: Keys, stream: str, fields: Fields, delay_ms: int) -> int:
    """Deliver ``fields`` to ``stream`` after ``delay_ms``; returns the due time (Unix ms)."""
    # Index first: a mover that sees the index but not yet the entry just moves nothing.
    await redis.sadd(keys.delayed_index(), stream)
    member = encode_member(fields)
    return int(await _schedule(redis, [keys.delayed(stream)], [max(0, delay_ms), member]))


async def move_due(redis: Redis, keys: Keys, service: str, *, batch: int = 500) -> int:
    """Move every due entry of every delayed set into its stream; returns how many.

    An entry that could not be moved is dead-lettered: to the service whose
    inbox it was for, else to ``service`` (the one moving it).
    """
    streams = sorted(await redis.smembers(keys.delayed_index()))
    if not streams:
        return 0
    calls = [
        ([keys.delayed(stream), stream, keys.delayed_parked(stream)], [batch]) for stream in streams
    ]
    moved = 0
    for stream, (count, parked) in zip(
        streams, await _move_due.run_many(redis, calls), strict=True
    ):
        moved += int(count)
        if int(parked):
            await dead_letter_parked(redis, keys, stream, service)
    return moved


async def dead_letter_parked(redis: Redis, keys: Keys, stream: str, service: str) -> int:
    """Dead-letter the parked entries of ``stream``'s delayed set; returns how many.

    Add before delete: a crash in between leaves a second dead letter, never none.
    """
    parked_key = keys.delayed_parked(stream)
    parked: dict[str, str] = await redis.hgetall(parked_key)
    owner = keys.service_of_inbox(stream) or service
    for member, reason in parked.items():
        fields = decode_member(member) or {"delayed_entry": member}
        letter = dead_letter_fields(
            fields,
            error=f"DelayedMoveError: {reason}",
            attempts=0,
            stream=stream,
            entry_id="",
            service=owner,
            at_ms=int(time.time() * 1000),
        )
        await redis.xadd(keys.dlq(owner), letter)
        await redis.hdel(parked_key, member)
    return len(parked)


async def pending_delayed(redis: Redis, keys: Keys, stream: str) -> int:
    """How many entries are still waiting to enter ``stream``."""
    return int(await redis.zcard(keys.delayed(stream)))
