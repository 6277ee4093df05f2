"""A companion that fails for good (an error it did not handle) stops its
worker, so the pool starts a new one: never a worker without its heartbeat."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from streamcart.bus.worker import WorkerRuntime, run_worker
from streamcart.errors import CompanionError
from tests.integration.services import fast_counter


async def test_a_failing_companion_stops_the_worker(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    started = asyncio.Event()

    async def broken(runtime: WorkerRuntime) -> None:
        await runtime.consumer.ready.wait()
        started.set()
        raise RuntimeError("a bug")

    async def patient(runtime: WorkerRuntime) -> None:
        await runtime.stop.wait()  # a well-behaved companion: ends at the stop

    with pytest.raises(CompanionError, match="companion of the counter worker"):
        await asyncio.wait_for(
            run_worker(
                fast_counter(), redis_url, namespace=namespace, companions=[broken, patient]
            ),
            timeout=30,
        )
    assert started.is_set()
