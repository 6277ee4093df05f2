"""Minute buckets, dated by when a message was published rather than handled,
so a replay from the dead-letter stream or a lagging worker counts where it
belongs."""

from __future__ import annotations

import time
from datetime import UTC, datetime

MINUTE_MS = 60_000
_HEX_ID_LENGTH = 32


def published_ms(message_id: str) -> int | None:
    """The Unix ms in a message id, or None if it holds none.

    A streamcart id (``new_message_id``: 32 hex digits, UUIDv7 layout) starts
    with the publish time in 48 bits; an entry injected without an id has its
    stream entry id (``<ms>-<seq>``) as its id.
    """
    if len(message_id) == _HEX_ID_LENGTH and message_id[12] == "7":
        try:
            int(message_id, 16)
        except ValueError:
            return None
        return int(message_id[:12], 16)
    ms, dash, seq = message_id.partition("-")
    if dash and ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit():
        return int(ms)
    return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def minute_of(message_id: str) -> int:
    """The bucket of a message: the Unix second its minute starts at (now, if
    the id holds no time)."""
    ms = published_ms(message_id)
    return minute_start(ms if ms is not None else now_ms())


def minute_start(ms: int) -> int:
    return ms // MINUTE_MS * 60


def window(minutes: int, until_ms: int) -> list[int]:
    """The last ``minutes`` buckets up to and including ``until_ms``'s, oldest first."""
    last = minute_start(until_ms)
    return [last - 60 * back for back in range(minutes - 1, -1, -1)]


def iso(minute: int) -> str:
    """A bucket as ISO 8601 UTC (``2025-01-31T12:34:00Z``)."""
    return datetime.fromtimestamp(minute, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
