"""Taking over the pending entries of a dead instance, and tidying groups.

A consumer whose instance stopped heartbeating will never acknowledge what it
holds. Its entries are claimed for a live consumer at once (no need to wait
for the claim timeout), and the dead consumer is removed from the group only
once it owns nothing: deleting a consumer that still has pending entries
would turn them into ghosts nobody can claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.scripts import Script

_PAGE = 500
_take_over = Script("takeover.lua", "streamcart.registry")
_remove_idle = Script("remove_idle.lua", "streamcart.registry")


class TakeOver(NamedTuple):
    """What a takeover claimed, and the pending ids whose entries were deleted."""

    claimed: int
    deleted: list[tuple[str, str]]  # (stream, entry id), still pending at the dead consumer


async def take_over(
    redis: Redis, streams: Sequence[str], group: str, dead: str, heir: str
) -> TakeOver:
    """Claim every entry ``dead`` holds in ``group`` for ``heir``.

    ``JUSTID`` keeps the delivery count: the heir's own read of its pending
    entries counts the delivery, so a poison message is still capped. Entries
    deleted from their stream are not claimed but returned, to dead-letter
    (reason ``trimmed``) and then acknowledge.
    """
    claimed = 0
    deleted: list[tuple[str, str]] = []
    for stream in streams:
        start = "-"
        while True:
            ids, gone, last = await _take_over(redis, [stream], [group, dead, heir, start, _PAGE])
            claimed += len(ids)
            deleted.extend((stream, entry_id) for entry_id in gone)
            if not last or len(ids) + len(gone) < _PAGE:
                break
            start = f"({last}"
    return TakeOver(claimed, deleted)


async def remove_if_idle(
    redis: Redis, keys: Keys, streams: Sequence[str], group: str, consumer: str, service: str
) -> int:
    """Delete ``consumer`` from the group on each stream where it owns no
    pending entry and no live process holds its name; returns deletions.

    The pending check and the delete are one step (``remove_idle.lua``): a
    process that takes the name meanwhile keeps whatever it reads.
    """
    if await redis.exists(keys.consumer_lease(service, consumer)):
        return 0  # a live process uses this name again
    removed = 0
    for stream in streams:
        removed += int(await _remove_idle(redis, [stream], [group, consumer]))
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
