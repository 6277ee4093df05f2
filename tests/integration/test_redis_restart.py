"""A worker outlives a restart of its Redis server: it reconnects by itself,
re-reads what it held, and every message is still applied exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamcart.bus.embedded import EmbeddedRedis
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Message, Publisher
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    free_port,
    wait_applied,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.standalone]

FAST_COUNTER = "tests.integration.services:fast_counter"
TOTAL = 2_000
NAMESPACE = "restart"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A server of this test alone, on a fixed port, with the append-only file on."""
    embedded = EmbeddedRedis(tmp_path / "redis", port=free_port(), appendonly=True)
    try:
        yield embedded
    finally:
        embedded.stop()


async def test_worker_reconnects_after_a_redis_restart_and_applies_each_message_once(
    server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Stop the server gracefully part-way through 2,000 increments and start it
    again a second later on the same port and data: the same worker process
    carries on and finishes, each message applied once, nothing pending."""
    url = server.start(daemonize=False)
    keys = CounterKeys(NAMESPACE)
    redis = Redis.from_url(url, decode_responses=True)
    try:
        ids = await Publisher(redis, Keys(NAMESPACE)).publish_many(
            Message(type="counter.increment", data={"name": f"r{i % 4}"}, to="counter")
            for i in range(TOTAL)
        )
        with Workers(url, NAMESPACE, tmp_path) as workers:
            worker = workers.start(FAST_COUNTER)
            await worker.consumer_name()

            async def under_way() -> int:
                applied = int(await redis.hlen(keys.applied))
                return applied if applied >= TOTAL // 5 else 0

            before_stop = await wait_for(
                under_way, within=30, what="a fifth applied", context=workers.tails
            )
            assert before_stop < TOTAL // 2, "too far along for the restart to land mid-run"
            server.stop()
            await asyncio.sleep(1.0)  # the outage
            assert worker.alive(), worker.tail()
            server.start(daemonize=False)
            # This test's own connections died with the old server.
            await redis.connection_pool.disconnect()

            applied = await wait_applied(redis, keys, TOTAL, within=45, context=workers.tails)
            assert worker.alive(), worker.tail()
            assert "redis unreachable" in worker.log(), "the worker never saw the outage"
            assert worker.log().count(" consuming ") == 1, "the worker restarted"

        assert_each_applied_once(applied, set(ids))
        counts = await redis.hgetall(keys.counts)
        assert counts == {f"r{d}": str(TOTAL // 4) for d in range(4)}
        assert await redis.xlen(keys.dlq) == 0
    finally:
        await redis.aclose()
