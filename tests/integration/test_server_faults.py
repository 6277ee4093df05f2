"""A worker under a server that refuses writes for a while (MISCONF when its
disk fails, READONLY after a failover), with handlers in flight: it waits, says
what it waits for, and once the server takes writes again every message is
applied exactly once, none dead-lettered, in the same process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Message, Publisher
from tests.integration.faults import misconf, readonly
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    wait_applied,
    wait_for,
)

FAST_COUNTER = "tests.integration.services:fast_counter"
# Its retries (3 attempts, 50 ms backoff) would all fail within this.
OUTAGE_S = 4.0
Fault = Callable[[Redis, str, Path], contextlib.AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def _misconf(redis: Redis, url: str, tmp_path: Path) -> AsyncIterator[None]:
    async with misconf(redis):
        yield


@contextlib.asynccontextmanager
async def _readonly(redis: Redis, url: str, tmp_path: Path) -> AsyncIterator[None]:
    async with readonly(redis, url, tmp_path / "copy"):
        yield


@pytest.mark.standalone  # each fault reconfigures the one server
@pytest.mark.parametrize(("fault", "code"), [(_misconf, "MISCONF"), (_readonly, "READONLY")])
async def test_a_worker_waits_out_a_server_that_refuses_writes(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path, fault: Fault, code: str
) -> None:
    keys = CounterKeys(namespace)
    with Workers(redis_url, namespace, tmp_path) as workers:
        worker = workers.start(FAST_COUNTER)
        await worker.consumer_name()
        # Slow handlers: the fault lands while most of them run or wait their turn.
        ids = await Publisher(real_redis, Keys(namespace)).publish_many(
            Message(type="counter.increment", data={"name": "a", "sleep_ms": 300}, to="counter")
            for _ in range(200)
        )
        async with fault(real_redis, redis_url, tmp_path):

            async def waiting() -> bool:
                return "is waiting: " in worker.log() and code in worker.log()

            await wait_for(waiting, within=30, what=f"the worker to wait on {code}")
            await asyncio.sleep(OUTAGE_S)  # the outage: longer than every retry of a message
        applied = await wait_applied(real_redis, keys, len(ids), within=60, context=workers.tails)
        assert_each_applied_once(applied, set(ids))
        assert await real_redis.xlen(keys.dlq) == 0, workers.tails()
        assert worker.alive(), worker.tail()
        assert worker.log().count(" consuming ") == 1, "the worker restarted"
