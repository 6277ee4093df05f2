"""Taking over the pending entries of a dead instance, and tidying groups.

A consumer whose instance stopped heartbeating will never acknowledge what it
holds. Its entries are claimed for a live consumer at once (no need to wait
for the claim timeout), and the dead consumer is removed from the group only
once it owns nothing: deleting a consumer that still has pending entries
would turn them into ghosts nobody can claim.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from streamcart.bus.keys import Keys

_PAGE = 500


async def take_over(redis: Redis, streams: Sequence[str], group: str, dead: str, heir: str) -> int:
    """Claim every entry ``dead`` holds in ``group`` for ``heir``; returns how many.

    ``JUSTID`` keeps the delivery count: the heir's own read of its pending
    entries counts the delivery, so a poison message is still capped.
    """
    taken = 0
    for stream in streams:
        while True:
            rows = await redis.xpending_range(
                stream, group, min="-", max="+", count=_PAGE, consumername=dead
            )
            ids = [row["message_id"] for row in rows]
            if not ids:
                break
            await redis.xclaim(stream, group, heir, 0, ids, justid=True)
            taken += len(ids)
            if len(ids) < _PAGE:
                break
    return taken


async def remove_if_idle(
    redis: Redis, keys: Keys, streams: Sequence[str], group: str, consumer: str, service: str
) -> int:
    """Delete ``consumer`` from the group on each stream where it owns no
    pending entry and no live process holds its name; returns deletions."""
    if await redis.exists(keys.consumer_lease(service, consumer)):
        return 0  # a live process uses this name again
    removed = 0
    for stream in streams:
        rows = await redis.xpending_range(
            stream, group, min="-", max="+", count=1, consumername=consumer
        )
        if not rows:
            removed += int(await redis.xgroup_delconsumer(stream, group, consumer) == 0)
    return removed


async def tidy_consumers(
    redis: Redis, keys: Keys, streams: Sequence[str], group: str, service: str, *, idle_ms: int
) -> list[str]:
    """Remove consumers that own nothing, have been idle for ``idle_ms`` and
    whose name no live process holds: a group does not grow without bound."""
    stale: set[str] = set()
    for stream in streams:
        for info in await redis.xinfo_consumers(stream, group):
            if int(info["pending"]) == 0 and int(info["idle"]) > idle_ms:
                stale.add(str(info["name"]))
    removed = []
    for consumer in sorted(stale):
        if await remove_if_idle(redis, keys, streams, group, consumer, service):
            removed.append(consumer)
    return removed
