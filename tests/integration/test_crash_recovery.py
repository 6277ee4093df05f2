"""A worker that dies mid-batch loses nothing and applies nothing twice.

The killed worker's entries stay pending in the group; another process reclaims
them after the claim timeout, and a message whose effects were committed just
before the kill is recognised by its dedup marker instead of applied again.
A consumer restarted under the same name first re-reads its own pending entries.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Message, Publisher
from streamcart.examples import counter
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    pending,
    pending_by_consumer,
    running,
    wait_applied,
    wait_for,
)

FAST_COUNTER = "tests.integration.services:fast_counter"
TOTAL = 5_000


def _increments(count: int, prefix: str = "c") -> list[Message]:
    return [
        Message(type="counter.increment", data={"name": f"{prefix}{i % 10}"}, to="counter")
        for i in range(count)
    ]


@pytest.mark.chaos
async def test_sigkilled_worker_loses_nothing_and_applies_nothing_twice(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """SIGKILL one worker part-way through 5,000 increments: a second process
    reclaims its pending entries and every message is applied exactly once."""
    keys = CounterKeys(namespace)
    ids = await Publisher(real_redis, Keys(namespace)).publish_many(_increments(TOTAL))

    with Workers(redis_url, namespace, tmp_path) as workers:
        first = workers.start(FAST_COUNTER)
        first_name = await first.consumer_name()

        async def some_applied() -> bool:
            return int(await real_redis.hlen(keys.applied)) >= TOTAL // 5

        await wait_for(some_applied, within=30, what="a fifth applied", context=workers.tails)
        first.send(signal.SIGKILL)
        assert await first.wait_exit(within=10) == -signal.SIGKILL

        applied_at_kill = int(await real_redis.hlen(keys.applied))
        assert applied_at_kill < TOTAL, "the worker finished before the kill; nothing to recover"
        orphaned = (await pending_by_consumer(real_redis, keys.inbox, keys.group)).get(first_name)
        assert orphaned, "the killed worker held no pending entries: reclaim is not exercised"

        second = workers.start(FAST_COUNTER)
        # The dead worker's name is still leased, so the second one cannot inherit it.
        assert await second.consumer_name() != first_name
        applied = await wait_applied(real_redis, keys, TOTAL, within=45, context=workers.tails)

        async def events_relayed() -> bool:
            # An event committed just before the kill waits in the outbox for the sweeper.
            if await real_redis.xlen(keys.outbox):
                return False
            events = await real_redis.xrange(keys.events)
            return len({fields["id"] for _, fields in events}) == TOTAL

        await wait_for(events_relayed, within=30, what="every event relayed", context=workers.tails)
        assert second.alive()

    assert_each_applied_once(applied, set(ids))
    counts = await real_redis.hgetall(keys.counts)
    assert sum(int(n) for n in counts.values()) == TOTAL
    assert counts == {f"c{d}": str(TOTAL // 10) for d in range(10)}
    assert await pending(real_redis, keys.inbox, keys.group) == 0
    assert await real_redis.xlen(keys.dlq) == 0


async def test_restarted_consumer_rereads_its_own_pending_entries_first(
    namespace: str, real_redis: Redis
) -> None:
    """A consumer restarted under the same name handles the entries its
    predecessor took but never acknowledged, before any new entry, and
    dead-letters one of them that was deleted from the stream meanwhile."""
    keys = CounterKeys(namespace)
    publisher = Publisher(real_redis, Keys(namespace))
    # A claim timeout far beyond the test: only own-pending recovery can find them.
    service = counter.build(ServiceOptions(claim_timeout_ms=600_000, block_ms=100))
    await real_redis.xgroup_create(keys.inbox, keys.group, id="0", mkstream=True)
    old_ids = await publisher.publish_many(_increments(100, prefix="old"))
    # The predecessor "c1" took them and crashed before acknowledging any.
    taken = await real_redis.xreadgroup(keys.group, "c1", {keys.inbox: ">"}, count=100)
    entry_ids = [entry_id for entry_id, _ in taken[0][1]]
    assert len(entry_ids) == 100
    deleted_entry = entry_ids[50]
    deleted_message = old_ids[50]
    await real_redis.xdel(keys.inbox, deleted_entry)
    new_ids = await publisher.publish_many(_increments(50, prefix="new"))

    # One handler at a time, so the order of the emitted events is the handling order.
    consumer = Consumer(service, real_redis, name="c1", keys=Keys(namespace), concurrency=1)
    async with running(consumer):
        await asyncio.wait_for(consumer.ready.wait(), 10)
        applied = await wait_applied(real_redis, keys, 149, within=30)

    expected = (set(old_ids) | set(new_ids)) - {deleted_message}
    assert_each_applied_once(applied, expected)
    names = [
        json.loads(fields["data"])["name"] for _, fields in await real_redis.xrange(keys.events)
    ]
    assert len(names) == 149
    assert all(name.startswith("old") for name in names[:99]), "new entries were handled first"
    assert await pending(real_redis, keys.inbox, keys.group) == 0
    assert [row["name"] for row in await real_redis.xinfo_consumers(keys.inbox, keys.group)] == [
        "c1"
    ]
    dead = await real_redis.xrange(keys.dlq)
    assert len(dead) == 1
    assert dead[0][1]["dlq_id"] == deleted_entry
    assert dead[0][1]["dlq_error"].startswith("trimmed")
