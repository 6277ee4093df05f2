"""SIGTERM drains a worker: handlers already running finish, their
acknowledgements are flushed, entries it had not started stay pending for
another instance, and the process exits 0 within its grace period."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Message, Publisher
from tests.integration.services import FAST_OPTIONS, fast_counter
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    pending_ids,
    running,
    wait_applied,
    wait_for,
)

FAST_COUNTER = "tests.integration.services:fast_counter"
TOTAL = 1_500


def _slow_increments(count: int) -> list[Message]:
    # 20 ms handlers, so some are always in flight when the stop comes.
    return [
        Message(type="counter.increment", data={"name": f"g{i % 5}", "sleep_ms": 20}, to="counter")
        for i in range(count)
    ]


async def _at_least(redis: Redis, key: str, count: int) -> bool:
    return int(await redis.hlen(key)) >= count


@pytest.mark.chaos
async def test_sigterm_drains_in_flight_work_and_exits_zero(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """A worker stopped with SIGTERM under load exits 0 within the grace period
    with no handler cut off; a second worker finishes the rest, nothing lost and
    nothing applied twice."""
    keys = CounterKeys(namespace)
    ids = await Publisher(real_redis, Keys(namespace)).publish_many(_slow_increments(TOTAL))

    with Workers(redis_url, namespace, tmp_path) as workers:
        first = workers.start(FAST_COUNTER)
        await first.consumer_name()
        await wait_for(
            lambda: _at_least(real_redis, keys.applied, TOTAL // 5),
            within=30,
            what="a fifth applied",
            context=workers.tails,
        )
        first.send(signal.SIGTERM)
        signalled = time.monotonic()
        assert await first.wait_exit(within=FAST_OPTIONS.shutdown_grace_s + 10) == 0, first.tail()
        assert time.monotonic() - signalled < FAST_OPTIONS.shutdown_grace_s
        assert "handlers still running after the grace period" not in first.log()
        assert not await _at_least(real_redis, keys.applied, TOTAL), "finished before the signal"

        second = workers.start(FAST_COUNTER)
        await second.consumer_name()
        applied = await wait_applied(real_redis, keys, TOTAL, within=45, context=workers.tails)
        second.send(signal.SIGTERM)
        assert await second.wait_exit(within=FAST_OPTIONS.shutdown_grace_s + 10) == 0

    assert_each_applied_once(applied, set(ids))
    counts = await real_redis.hgetall(keys.counts)
    assert counts == {f"g{d}": str(TOTAL // 5) for d in range(5)}
    assert await real_redis.xlen(keys.dlq) == 0
    events = await real_redis.xrange(keys.events)
    assert sorted(json.loads(f["data"])["name"] for _, f in events) == sorted(
        f"g{i % 5}" for i in range(TOTAL)
    )


async def test_graceful_stop_acknowledges_every_message_it_applied(
    namespace: str, real_redis: Redis
) -> None:
    """After a graceful stop, every entry the consumer still holds pending is one
    it never applied: the acknowledgements of finished handlers were flushed.

    The stop lands at a random point of the ack cycle, so it is repeated.
    """
    for round_ in range(12):
        ns = f"{namespace}r{round_}"
        keys = CounterKeys(ns)
        await Publisher(real_redis, Keys(ns)).publish_many(_slow_increments(600))
        consumer = Consumer(fast_counter(), real_redis, name="c", keys=Keys(ns), concurrency=16)
        async with running(consumer):
            await wait_for(
                lambda keys=keys: _at_least(real_redis, keys.applied, 150),
                within=30,
                what="150 applied",
            )

        applied: dict[str, str] = await real_redis.hgetall(keys.applied)
        entries = dict(await real_redis.xrange(keys.inbox))
        left = await pending_ids(real_redis, keys.inbox, keys.group, "c")
        unacked = {entries[entry_id]["id"] for entry_id in left} & set(applied)
        assert not unacked, f"round {round_}: {len(unacked)} applied messages left unacknowledged"
