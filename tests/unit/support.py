"""Helpers to run a consumer on fakeredis until something is true."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from streamcart import cli
from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.observer import ConsumerObserver
from streamcart.bus.service import Service

KEYS = Keys("t")


@asynccontextmanager
async def running(
    service: Service,
    redis: Redis,
    *,
    name: str = "c1",
    concurrency: int = 8,
    observers: Sequence[ConsumerObserver] = (),
    keys: Keys = KEYS,
) -> AsyncIterator[Consumer]:
    """A consumer running in the background; stopped gracefully on exit."""
    consumer = Consumer(
        service, redis, name=name, keys=keys, concurrency=concurrency, observers=observers
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            for t in asyncio.all_tasks():
                t.print_stack(limit=4)
            raise


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until ``check()`` is true; fail the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s: {check.__doc__ or check}")
        await asyncio.sleep(0.02)


async def drained(consumer: Consumer) -> None:
    """Wait until ``consumer``'s group has read and acknowledged everything on its
    topics, and check that nothing was dead-lettered."""
    service = consumer.service
    topics = service.streams(consumer.keys)[1:]

    async def settled() -> bool:
        for stream in topics:
            for group in await consumer.redis.xinfo_groups(stream):
                if group["name"] == service.name and (group["pending"] or group["lag"]):
                    return False
        return True

    await eventually(settled)
    assert await consumer.redis.xlen(consumer.keys.dlq(service.name)) == 0


class UpRecorder:
    """Stands in for ``streamcart up``'s Pool and spawned helper processes: records
    what each would be given (options, environment) and starts nothing."""

    def __init__(self) -> None:
        self.pools: list[dict[str, Any]] = []
        self.environments: list[dict[str, str]] = []
        self.helpers: list[dict[str, Any]] = []

    def pool(self, services: dict[str, int], redis_url: str, **options: Any) -> UpRecorder:
        self.pools.append({"services": services, **options})
        self.environments.append(dict(os.environ))
        return self

    def run(self) -> None:
        pass

    def get_context(self, method: str) -> UpRecorder:
        return self

    def Process(self, **options: Any) -> _Helper:
        self.helpers.append(options)
        return _Helper()


class _Helper:
    def start(self) -> None:
        pass

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass


def record_up(monkeypatch: pytest.MonkeyPatch) -> UpRecorder:
    """``streamcart up`` in this test builds its pools and helpers on a recorder."""
    recorder = UpRecorder()
    monkeypatch.setattr(cli, "Pool", recorder.pool)
    monkeypatch.setattr(cli.multiprocessing, "get_context", recorder.get_context)
    monkeypatch.delenv("STREAMCART_DEPLOYMENT", raising=False)
    return recorder
