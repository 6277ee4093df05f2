"""Hot reload on a real server: a running worker applies a config change within
a second, also one whose pub/sub announcement it never heard, and survives a
value written by hand that does not fit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Publisher
from streamcart.bus.worker import WorkerRuntime, run_worker
from streamcart.cli import main
from streamcart.config.store import ConfigStore
from streamcart.config.watch import config_watcher
from tests import shop
from tests.integration.support import wait_for

SPEC = "tests.shop:build"


@contextlib.asynccontextmanager
async def worker(redis_url: str, namespace: str) -> AsyncIterator[WorkerRuntime]:
    """An in-process shop worker with the config watcher; stopped at exit."""
    stop = asyncio.Event()
    started: asyncio.Future[WorkerRuntime] = asyncio.get_running_loop().create_future()

    async def expose(runtime: WorkerRuntime) -> None:
        started.set_result(runtime)
        await runtime.stop.wait()

    task = asyncio.create_task(
        run_worker(
            shop.build(),
            redis_url,
            namespace=namespace,
            concurrency=4,
            companions=[config_watcher, expose],
            stop=stop,
        )
    )
    try:
        runtime = await asyncio.wait_for(asyncio.shield(started), 10)
        await asyncio.wait_for(runtime.consumer.ready.wait(), 10)
        yield runtime
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _cli(redis_url: str, namespace: str, *args: str) -> str:
    """Run ``streamcart`` in a thread: it runs its own event loop."""
    argv = ["--redis-url", redis_url, "--namespace", namespace, *args]
    result = await asyncio.to_thread(CliRunner().invoke, main, argv)
    assert result.exit_code == 0, result.output
    return result.output


async def _within_a_second(what: str, probe: Any) -> float:
    started = time.monotonic()
    await wait_for(probe, within=1.0, what=what)
    return time.monotonic() - started


async def test_a_cli_change_reaches_a_running_worker_and_its_handlers(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    async with worker(redis_url, namespace) as runtime:
        consumer = runtime.consumer
        await _cli(redis_url, namespace, "config", "set", SPEC, "max_attempts", "2")
        await _cli(redis_url, namespace, "config", "set", SPEC, "discount_pct", "15")

        async def applied() -> bool:
            return consumer.options.max_attempts == 2 and consumer.settings.discount_pct == 15

        await _within_a_second("max_attempts and discount_pct applied", applied)
        greetings = Keys(namespace).state(shop.NAME, "greetings")
        await Publisher(real_redis, Keys(namespace)).publish("shop.greet", {}, to=shop.NAME)

        async def greeted() -> list[str]:
            return list(await real_redis.lrange(greetings, 0, -1))

        assert await wait_for(greeted, within=5.0, what="the greeting") == ["hello 15%"]


async def test_a_change_whose_announcement_is_lost_converges_by_the_version(
    redis_url: str, namespace: str, real_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost: list[tuple[Any, ...]] = []

    async def drop(*args: Any) -> int:
        lost.append(args)
        return 0

    writer = connect(redis_url)
    monkeypatch.setattr(writer, "publish", drop)
    try:
        async with worker(redis_url, namespace) as runtime:
            await asyncio.sleep(0.3)  # loaded and subscribed: only the poll can find it now
            await ConfigStore(writer, Keys(namespace)).set(shop.NAME, "greeting", "quietly")

            async def applied() -> bool:
                return bool(runtime.consumer.settings.greeting == "quietly")

            await _within_a_second("the unannounced change applied", applied)
        assert [args[1] for args in lost] == ["1"]  # it was never published
    finally:
        await writer.aclose()


async def test_a_change_made_while_the_worker_was_down_applies_at_start(
    redis_url: str, namespace: str
) -> None:
    await _cli(redis_url, namespace, "config", "set", "max_attempts", "3")
    await _cli(redis_url, namespace, "config", "set", SPEC, "featured", '["sku-9"]')
    async with worker(redis_url, namespace) as runtime:

        async def applied() -> bool:
            consumer = runtime.consumer
            return consumer.options.max_attempts == 3 and consumer.settings.featured == ["sku-9"]

        await _within_a_second("the stored config applied at start", applied)


async def test_an_invalid_value_written_by_hand_is_logged_and_skipped(
    redis_url: str, namespace: str, real_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="streamcart.config")
    keys = Keys(namespace)
    async with worker(redis_url, namespace) as runtime:
        # What an operator might type: redis-cli HSET ... ; redis-cli INCR ...version
        await real_redis.hset(
            keys.config_scope(shop.NAME), mapping={"claim_timeout_ms": "5", "greeting": "hi"}
        )
        await real_redis.incr(keys.config_version())

        async def applied() -> bool:
            return bool(runtime.consumer.settings.greeting == "hi")

        await _within_a_second("the valid hand-written value applied", applied)
        assert runtime.consumer.options.claim_timeout_ms == shop.OPTIONS.claim_timeout_ms
        await Publisher(real_redis, keys).publish("shop.greet", {}, to=shop.NAME)

        async def greeted() -> list[str]:
            return list(await real_redis.lrange(keys.state(shop.NAME, "greetings"), 0, -1))

        assert await wait_for(greeted, within=5.0, what="the greeting") == ["hi 0%"]
    assert "claim_timeout_ms must be at least 100" in caplog.text
