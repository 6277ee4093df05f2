"""The dedup window on fakeredis: a duplicate is skipped within it, an id may
apply again after it, never while its entry is pending or its retry scheduled.
The memory bound is measured on a real server (tests/integration/test_dedup.py).
"""

from __future__ import annotations

import logging

from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis

from streamcart import Context, ServiceOptions
from streamcart.bus import delayed
from streamcart.bus.commit import commit
from streamcart.bus.dedup import SHARD_FIELDS, DedupWindow, collect, marker
from streamcart.bus.envelope import Envelope, new_message_id
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Publisher
from streamcart.examples import counter
from tests.unit.support import KEYS, eventually, running

WINDOW_S = 1
SHORT = ServiceOptions(block_ms=20, claim_timeout_ms=100, dedup_window_s=WINDOW_S)
SERVICE = counter.build(SHORT)
STREAMS = SERVICE.streams(KEYS)


async def count(redis: Redis, keys: Keys = KEYS) -> int:
    return int(await redis.hget(keys.state("counter", "counts"), "a") or 0)


async def increment(redis: Redis, message_id: str, keys: Keys = KEYS) -> None:
    await Publisher(redis, keys).publish(
        "counter.increment", {"name": "a"}, to="counter", message_id=message_id
    )


async def commit_directly(
    redis: Redis,
    message_id: str,
    *,
    keys: Keys = KEYS,
    window: DedupWindow | None = None,
    window_s: int = WINDOW_S,
) -> None:
    """Commit an increment for ``message_id`` as a handler would, with no consumer."""
    handler = SERVICE.handler_for("counter.increment")
    assert handler is not None
    ctx = Context(SERVICE, _envelope(message_id, keys), redis, keys, logging.getLogger("test"))
    await handler.func(counter.Increment(name="a"), ctx)
    await commit(ctx, window or DedupWindow(redis, keys, "counter"), window_s=window_s)


def _envelope(message_id: str, keys: Keys) -> Envelope:
    return Envelope(
        type="counter.increment", data="{}", id=message_id, stream=keys.inbox("counter"),
        entry_id="1-0",
    )  # fmt: skip


async def window_passed(redis: Redis, keys: Keys = KEYS) -> bool:
    """Whether every bucket there is ended more than the window ago (Redis clock)."""
    window = DedupWindow(redis, keys, "counter")
    await window.refresh()
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    return all(b.start_ms + b.width_ms + WINDOW_S * 1000 < now_ms for b in window.buckets)


async def test_a_duplicate_inside_the_window_is_skipped(fake_redis: FakeAsyncRedis) -> None:
    message_id = new_message_id()
    async with running(counter.build(ServiceOptions(block_ms=20)), fake_redis) as consumer:
        await increment(fake_redis, message_id)
        await increment(fake_redis, message_id)
        await increment(fake_redis, new_message_id())

        async def all_acked() -> bool:
            return consumer.stats.acked == 3

        await eventually(all_acked)
    assert await count(fake_redis) == 2


async def test_an_id_may_apply_again_after_the_window(fake_redis: FakeAsyncRedis) -> None:
    message_id = new_message_id()
    async with running(counter.build(SHORT), fake_redis) as consumer:
        await increment(fake_redis, message_id)

        async def forgotten() -> bool:
            return await count(fake_redis) == 1 and not await consumer.dispatcher.dedup.seen(
                message_id
            )

        await eventually(forgotten)
        assert await fake_redis.keys(KEYS.dedup_index("counter") + "*") == []
        await increment(fake_redis, message_id)

        async def applied_again() -> bool:
            return await count(fake_redis) == 2

        await eventually(applied_again)


async def test_a_marker_is_kept_while_its_entry_is_pending_past_the_window(
    fake_redis: FakeAsyncRedis,
) -> None:
    """A worker committed, then died before its ack: however late the entry is
    reclaimed, it is recognised and not applied again."""
    message_id = new_message_id()
    inbox = KEYS.inbox("counter")
    await fake_redis.xgroup_create(inbox, "counter", id="0", mkstream=True)
    await increment(fake_redis, message_id)
    await fake_redis.xreadgroup("counter", "died", {inbox: ">"})
    await commit_directly(fake_redis, message_id)
    await eventually(lambda: window_passed(fake_redis))
    assert await collect(fake_redis, KEYS, "counter", STREAMS, window_s=WINDOW_S) == 0
    async with running(counter.build(SHORT), fake_redis) as consumer:

        async def reclaimed_and_acked() -> bool:
            return consumer.stats.skipped == 1 and consumer.stats.acked == 1

        await eventually(reclaimed_and_acked)

        async def then_forgotten() -> bool:
            return not await consumer.dispatcher.dedup.seen(message_id)

        await eventually(then_forgotten)
    assert await count(fake_redis) == 1


async def test_a_marker_is_kept_while_its_retry_is_scheduled(fake_redis: FakeAsyncRedis) -> None:
    message_id = new_message_id()
    inbox = KEYS.inbox("counter")
    await commit_directly(fake_redis, message_id)
    retry = {"type": "counter.increment", "data": '{"name": "a"}', "id": message_id}
    await delayed.schedule(fake_redis, KEYS, inbox, {**retry, "attempt": "2"}, 600_000)
    await eventually(lambda: window_passed(fake_redis))
    assert await collect(fake_redis, KEYS, "counter", STREAMS, window_s=WINDOW_S) == 0
    assert await DedupWindow(fake_redis, KEYS, "counter").seen(message_id)
    # Moved into the inbox (due now), not yet read: still kept.
    await fake_redis.delete(KEYS.delayed(inbox))
    await fake_redis.xadd(inbox, {**retry, "attempt": "2"})
    assert await collect(fake_redis, KEYS, "counter", STREAMS, window_s=WINDOW_S) == 0
    await fake_redis.delete(inbox)
    assert await collect(fake_redis, KEYS, "counter", STREAMS, window_s=WINDOW_S) == 1
    assert not await DedupWindow(fake_redis, KEYS, "counter").seen(message_id)


async def test_shards_stay_small_and_every_id_is_found(fake_redis: FakeAsyncRedis) -> None:
    window = DedupWindow(fake_redis, KEYS, "counter")
    ids = [new_message_id() for _ in range(1_500)] + ["1700000000000-0", "x" * 200]
    for message_id in ids:
        await commit_directly(fake_redis, message_id, window=window)
    assert await count(fake_redis) == len(ids)
    shards = [
        key
        async for key in fake_redis.scan_iter(match=KEYS.dedup_index("counter") + ":*")
        if not key.endswith(":counts")
    ]
    sizes = [await fake_redis.hlen(key) for key in shards]
    assert sum(sizes) == len(ids)
    assert max(sizes) <= SHARD_FIELDS
    for message_id in (ids[0], ids[-3], ids[-2], ids[-1]):
        await commit_directly(fake_redis, message_id, window=window)
        assert await window.seen(message_id)
    assert await count(fake_redis) == len(ids)


def test_markers_are_one_to_one_and_short() -> None:
    uuid_hex = "01a23c2319be7c66faf5406a33d5f793"
    ids = [uuid_hex, uuid_hex.upper(), bytes.fromhex(uuid_hex).decode("latin-1"), "1-0", "y" * 300]
    fields = [marker(message_id) for message_id in ids]
    assert len(set(fields)) == len(ids)
    assert max(len(field) for field in fields) <= 33
