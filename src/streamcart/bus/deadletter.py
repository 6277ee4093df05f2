"""Dead letters: what failed for good, kept whole so it can be replayed.

A dead letter holds the entry's original fields unchanged plus ``dlq_error``,
``dlq_attempts``, ``dlq_stream``, ``dlq_id``, ``dlq_service`` and ``dlq_at``.
Replay sends it back to its service only, through the service inbox.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from streamcart.bus.envelope import ATTEMPT, ID, Fields
from streamcart.bus.keys import Keys

DLQ_FIELDS = ("dlq_error", "dlq_attempts", "dlq_stream", "dlq_id", "dlq_service", "dlq_at")
TRIMMED = "trimmed"

Entry = tuple[str, Fields]


def dead_letter_fields(
    fields: Fields | None,
    *,
    error: str,
    attempts: int,
    stream: str,
    entry_id: str,
    service: str,
    at_ms: int,
) -> Fields:
    """The dead-letter entry for a failed stream entry."""
    return {
        **(fields or {}),
        "dlq_error": error,
        "dlq_attempts": str(attempts),
        "dlq_stream": stream,
        "dlq_id": entry_id,
        "dlq_service": service,
        "dlq_at": str(at_ms),
    }


def describe(exc: BaseException) -> str:
    """``dlq_error`` for an exception: its class and message."""
    return f"{type(exc).__name__}: {exc}"


def replay_fields(dead: Fields) -> Fields:
    """The entry to send back: the original fields, a fresh attempt count, and
    the original message id (so effects already applied are not applied again)."""
    fields = {k: v for k, v in dead.items() if k not in DLQ_FIELDS and k != ATTEMPT}
    fields.setdefault(ID, dead.get("dlq_id", ""))
    return fields


async def list_dead(
    redis: Redis, keys: Keys, service: str, *, count: int = 100, start: str = "-"
) -> list[Entry]:
    return list(await redis.xrange(keys.dlq(service), start, "+", count=count))


async def count_dead(redis: Redis, keys: Keys, service: str) -> int:
    return int(await redis.xlen(keys.dlq(service)))


async def _select(redis: Redis, dlq: str, ids: Sequence[str] | None) -> list[Entry]:
    if ids is None:
        return list(await redis.xrange(dlq, "-", "+"))
    entries: list[Entry] = []
    for entry_id in ids:
        entries.extend(await redis.xrange(dlq, entry_id, entry_id))
    return entries


async def replay(redis: Redis, keys: Keys, service: str, ids: Sequence[str] | None = None) -> int:
    """Send dead letters (all, or those ``ids``) back to the service inbox."""
    dlq, inbox = keys.dlq(service), keys.inbox(service)
    entries = await _select(redis, dlq, ids)
    # Add before delete: a crash in between leaves a copy in the DLQ, never nothing.
    for start in range(0, len(entries), 500):
        chunk = entries[start : start + 500]
        async with redis.pipeline(transaction=False) as pipe:
            for _, fields in chunk:
                pipe.xadd(inbox, replay_fields(fields))
            pipe.xdel(dlq, *(entry_id for entry_id, _ in chunk))
            await pipe.execute()
    return len(entries)


async def purge(redis: Redis, keys: Keys, service: str, ids: Sequence[str] | None = None) -> int:
    """Delete dead letters (all, or those ``ids``); returns how many."""
    dlq = keys.dlq(service)
    if ids is None:
        count = int(await redis.xlen(dlq))
        await redis.delete(dlq)
        return count
    return int(await redis.xdel(dlq, *ids)) if ids else 0
