"""Consumer-group mechanics: groups, own pending entries, reclaiming, renewing.

These avoid the classic Streams mistakes: groups are created at id ``0``
(messages published before the group existed are seen), a restarted consumer
re-reads its own pending entries, XAUTOCLAIM's cursor is carried to the end
and its deleted ids are reported, and delivery counts are read from the
pending list so a poison message cannot loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streamcart.bus.envelope import Fields
from streamcart.bus.scripts import Script

Entry = tuple[str, Fields | None]
_renew = Script("renew.lua")


async def ensure_groups(redis: Redis, streams: Iterable[str], group: str) -> None:
    """Create ``group`` on each stream (and the stream) from id 0; existing is fine."""
    for stream in streams:
        try:
            await redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


async def delivery_counts(
    redis: Redis, stream: str, group: str, consumer: str, ids: Sequence[str]
) -> dict[str, int]:
    """How many times each of ``ids`` (pending at ``consumer``) was delivered."""
    if not ids:
        return {}
    rows = await redis.xpending_range(
        stream, group, min=ids[0], max=ids[-1], count=len(ids) + 1_000, consumername=consumer
    )
    return {row["message_id"]: int(row["times_delivered"]) for row in rows}


async def read_own_pending(
    redis: Redis, stream: str, group: str, consumer: str, after: str, count: int
) -> list[Entry]:
    """The next ``count`` entries pending at ``consumer`` after id ``after``.

    A pending entry deleted from the stream comes back with ``None`` fields.
    """
    reply = await redis.xreadgroup(group, consumer, {stream: after}, count=count)
    if not reply:
        return []
    _, entries = reply[0]
    return [(entry_id, fields or None) for entry_id, fields in entries]


async def autoclaim(
    redis: Redis,
    stream: str,
    group: str,
    consumer: str,
    *,
    min_idle_ms: int,
    cursor: str,
    count: int,
) -> tuple[str, list[Entry], list[str]]:
    """One XAUTOCLAIM step: (next cursor, claimed entries, ids deleted from the stream).

    Callers loop until the cursor wraps to ``0-0``: one step only scans part
    of the pending list.
    """
    reply = await redis.xautoclaim(
        stream, group, consumer, min_idle_time=min_idle_ms, start_id=cursor, count=count
    )
    next_cursor, entries = reply[0], reply[1]
    deleted = list(reply[2]) if len(reply) > 2 else []
    claimed: list[Entry] = [(entry_id, fields or None) for entry_id, fields in entries]
    return next_cursor, claimed, deleted


async def renew(
    redis: Redis, group: str, consumer: str, ids_by_stream: Mapping[str, Sequence[str]]
) -> list[tuple[str, str]]:
    """Reset the idle time of entries still being worked on by ``consumer``.

    Returns the (stream, id) pairs another consumer has claimed meanwhile.
    """
    calls = [([stream], [group, consumer, *ids]) for stream, ids in ids_by_stream.items() if ids]
    replies = await _renew.run_many(redis, calls)
    lost: list[tuple[str, str]] = []
    for (keys, _), lost_ids in zip(calls, replies, strict=True):
        lost.extend((keys[0], entry_id) for entry_id in lost_ids)
    return lost
