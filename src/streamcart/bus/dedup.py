"""The dedup window: which message ids a service has applied, in bounded memory.

A message id marked here is never applied again while its entry is pending,
its retry is scheduled, or it is younger than ``dedup_window_s``; after that
it may be (docs/contract.md). One key per message would cost over 100 bytes,
so markers are fields of small hashes (listpack encoding, about 20 bytes a
field): time buckets of ``window / 4``, each split into shards of at most
:data:`SHARD_FIELDS` fields. Only the newest bucket is written to; the commit
script (``commit.lua``) opens a new one when it is over or the shard a
message goes to is full, with its shard count taken from the rate of the one
before, so every worker agrees on it. A lookup checks every bucket that still
exists. :func:`collect` deletes old buckets, never one that a message still
in flight may need.

The index ``{<ns>:<service>}:dedup`` is a sorted set of the buckets as
``<seq>:<start ms>:<width ms>:<shards>`` members; a script is told the view
its caller built its keys from, and answers ``stale`` with the current one
when they differ.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streamcart.bus.delayed import decode_member
from streamcart.bus.envelope import ATTEMPT, ID
from streamcart.bus.keys import Keys
from streamcart.bus.rawtext import ENCODING_ERRORS, is_decimal

# Fields per shard at most: Redis keeps a hash of up to 128 fields
# (hash-max-listpack-entries, which we do not change) as a compact listpack.
SHARD_FIELDS = 128
# A scan of the in-flight messages larger than this defers collection.
SCAN_LIMIT = 10_000
_UNLINK_BATCH = 500
_UUID_HEX = re.compile(r"[0-9a-f]{32}")


class Bucket(NamedTuple):
    """One time bucket: markers written from ``start_ms`` for ``width_ms`` at most."""

    seq: int
    start_ms: int
    width_ms: int
    shards: int

    @classmethod
    def parse(cls, member: str | bytes) -> Bucket:
        text = member.decode() if isinstance(member, bytes) else member
        seq, start, width, shards = (int(part) for part in text.split(":"))
        return cls(seq, start, width, shards)

    @property
    def member(self) -> str:
        return f"{self.seq}:{self.start_ms}:{self.width_ms}:{self.shards}"


def marker(message_id: str) -> bytes:
    """The field a message id is marked by, one to one: a 32-hex id (what
    publishers make) as its 16 bytes, a short one as itself, a long one as its
    SHA-256, each behind a tag byte so no two kinds meet."""
    if _UUID_HEX.fullmatch(message_id):
        return b"u" + bytes.fromhex(message_id)
    raw = message_id.encode("utf-8", ENCODING_ERRORS)
    if len(raw) <= 47:
        return b"r" + raw
    return b"h" + hashlib.sha256(raw).digest()


def shard_of(field: bytes, bucket: Bucket) -> int:
    return zlib.crc32(field) % bucket.shards


class DedupWindow:
    """One service's markers, as seen by one process (its view of the buckets)."""

    __slots__ = ("buckets", "keys", "loaded", "redis", "service")

    def __init__(self, redis: Redis, keys: Keys, service: str) -> None:
        self.redis = redis
        self.keys = keys
        self.service = service
        self.buckets: list[Bucket] = []
        self.loaded = False

    @property
    def index(self) -> str:
        return self.keys.dedup_index(self.service)

    def shard_key(self, bucket: Bucket, field: bytes) -> str:
        return self.keys.dedup_shard(self.service, bucket.seq, shard_of(field, bucket))

    def lookup_keys(self, field: bytes) -> list[str]:
        """The shard of every bucket in view where ``field`` would be."""
        return [self.shard_key(bucket, field) for bucket in self.buckets]

    def update(self, members: Sequence[str | bytes]) -> None:
        """Take the view a script answered ``stale`` with, or the index read anew."""
        self.buckets = [Bucket.parse(member) for member in members]
        self.loaded = True

    async def refresh(self) -> None:
        self.update(await self.redis.zrange(self.index, 0, -1))

    async def seen(self, message_id: str) -> bool:
        """Whether ``message_id`` is marked: applied before, within the window.

        The commit decides for good; this spares a redelivered message its
        handler (and whatever the handler does outside Redis).
        """
        await self.refresh()
        if not self.buckets:
            return False
        field = marker(message_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in self.lookup_keys(field):
                pipe.hexists(key, field)
            return any(await pipe.execute())

    def script_part(
        self, message_id: str, window_s: int, *, prepare: bool = False
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments ``commit.lua`` marks ``message_id`` with (or,
        with ``prepare``, only checks the view, the marker and the bucket)."""
        field = marker(message_id)
        keys = [self.index, self.keys.dedup_counts(self.service), *self.lookup_keys(field)]
        width_ms = max(1, window_s * 1000 // 4)
        args: list[Any] = [width_ms, SHARD_FIELDS, field, int(prepare), len(self.buckets)]
        args += [bucket.member for bucket in self.buckets]
        return keys, args


async def collect(
    redis: Redis, keys: Keys, service: str, streams: Sequence[str], *, window_s: int
) -> int:
    """Delete the buckets past the window that no message in flight may need;
    returns how many. Markers of a pending entry are newer than the entry
    (stream ids carry their time), and a retry (an entry with ``attempt``
    above 1) is looked up by id: in the inbox's delayed set, then the inbox
    from its oldest pending or undelivered entry on, read in the order an
    entry moves through them, so none slips past.
    """
    window = DedupWindow(redis, keys, service)
    await window.refresh()
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    expired = []
    after_each: list[Bucket | None] = [*window.buckets[1:], None]
    for bucket, after in zip(window.buckets, after_each[: len(window.buckets)], strict=True):
        end = bucket.start_ms + bucket.width_ms
        if after is not None:
            end = min(end, after.start_ms)
        if end + window_s * 1000 > now_ms:
            break
        expired.append((bucket, end))
    if not expired:
        return 0
    inbox = keys.inbox(service)
    retries = await _scheduled_retries(redis, keys, inbox)
    if retries is None:
        return 0
    oldest, inbox_from = await _oldest_in_flight(redis, streams, service, inbox)
    more = await _inbox_retries(redis, inbox, inbox_from)
    if more is None:
        return 0
    fields = [marker(message_id) for message_id in retries | more]
    dropped = 0
    for bucket, end in expired:
        # The markers of an entry are written after it: a margin of one bucket
        # covers the clocks of two cluster nodes (entry ids vs the script's TIME).
        if oldest is not None and end + bucket.width_ms > oldest:
            break
        if await _holds_any(redis, window, bucket, fields):
            break
        await _drop(redis, keys, service, bucket)
        dropped += 1
    return dropped


async def _scheduled_retries(redis: Redis, keys: Keys, inbox: str) -> set[str] | None:
    members = await redis.zrange(keys.delayed(inbox), 0, SCAN_LIMIT)
    if len(members) > SCAN_LIMIT:
        return None
    ids = set()
    for member in members:
        fields = decode_member(member)
        if fields is not None and _is_retry(fields):
            ids.add(fields[ID])
    return ids


async def _oldest_in_flight(
    redis: Redis, streams: Sequence[str], group: str, inbox: str
) -> tuple[int | None, str]:
    """The time (ms) of the oldest pending entry of any stream, and the id the
    inbox's in-flight entries start from (its oldest pending or undelivered)."""
    oldest: int | None = None
    inbox_from = "-"
    for stream in streams:
        try:
            summary = await redis.xpending(stream, group)
            groups = await redis.xinfo_groups(stream) if stream == inbox else []
        except ResponseError:
            continue  # no group yet: nothing of it in flight
        first = summary.get("min")
        if first:
            at = _entry_ms(first)
            oldest = at if oldest is None else min(oldest, at)
        if stream == inbox:
            delivered = next((g["last-delivered-id"] for g in groups if g["name"] == group), None)
            candidates = [_text(i) for i in (first, delivered) if i]
            inbox_from = min(candidates, key=_entry_key) if candidates else "-"
    return oldest, inbox_from


async def _inbox_retries(redis: Redis, inbox: str, start: str) -> set[str] | None:
    entries = await redis.xrange(inbox, start, "+", count=SCAN_LIMIT + 1)
    if len(entries) > SCAN_LIMIT:
        return None
    return {fields[ID] for _, fields in entries if _is_retry(fields)}


def _is_retry(fields: dict[str, str]) -> bool:
    attempt = fields.get(ATTEMPT, "1")
    return ID in fields and is_decimal(attempt) and int(attempt) > 1


async def _holds_any(
    redis: Redis, window: DedupWindow, bucket: Bucket, fields: Sequence[bytes]
) -> bool:
    if not fields:
        return False
    async with redis.pipeline(transaction=False) as pipe:
        for field in fields:
            pipe.hexists(window.shard_key(bucket, field), field)
        return any(await pipe.execute())


async def _drop(redis: Redis, keys: Keys, service: str, bucket: Bucket) -> None:
    """Shards first, then the index entry: a crash in between leaves the
    bucket listed, and the next collection deletes it again."""
    shards = [keys.dedup_shard(service, bucket.seq, shard) for shard in range(bucket.shards)]
    for start in range(0, len(shards), _UNLINK_BATCH):
        await redis.unlink(*shards[start : start + _UNLINK_BATCH])
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.dedup_index(service), bucket.member)
        pipe.hdel(keys.dedup_counts(service), str(bucket.seq))
        await pipe.execute()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _entry_ms(entry_id: str | bytes) -> int:
    return _entry_key(_text(entry_id))[0]
