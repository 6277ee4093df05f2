"""The hot-reload companion on fakeredis: start-up load, pub/sub, polling, bad values."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis

from streamcart.bus.consumer import Consumer
from streamcart.bus.publisher import Publisher
from streamcart.bus.worker import WorkerRuntime
from streamcart.config.store import ConfigStore
from streamcart.config.watch import watch_config
from tests import shop
from tests.shop import Knobs
from tests.unit.support import KEYS, eventually, running


@asynccontextmanager
async def watching(redis: FakeAsyncRedis, *, poll_s: float) -> AsyncIterator[Consumer]:
    """A watcher beside a (not running) consumer of the shop; stopped at exit."""
    consumer = Consumer(shop.build(), redis, name="c1", keys=KEYS)
    runtime = WorkerRuntime(
        consumer.service, redis, KEYS, consumer, instance_id="c1.x", stop=asyncio.Event()
    )
    task = asyncio.create_task(watch_config(runtime, poll_s=poll_s))
    try:
        yield consumer
    finally:
        runtime.stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_stored_config_is_applied_at_start(fake_redis: FakeAsyncRedis) -> None:
    store = ConfigStore(fake_redis, KEYS)
    await store.set("global", "max_attempts", 2)
    await store.set("shop", "greeting", "welcome")
    async with watching(fake_redis, poll_s=60) as consumer:

        async def loaded() -> bool:
            return consumer.options.max_attempts == 2 and consumer.settings.greeting == "welcome"

        await eventually(loaded, within=1.0)
    assert consumer.options.block_ms == shop.OPTIONS.block_ms  # declared defaults kept


async def test_an_announced_change_applies_without_waiting_for_the_poll(
    fake_redis: FakeAsyncRedis,
) -> None:
    async with watching(fake_redis, poll_s=60) as consumer:
        await asyncio.sleep(0.1)  # loaded and subscribed
        await ConfigStore(fake_redis, KEYS).set("shop", "discount_pct", 25)

        async def applied() -> bool:
            return bool(consumer.settings.discount_pct == 25)

        await eventually(applied, within=1.0)


async def test_a_change_never_announced_is_found_by_the_version_poll(
    fake_redis: FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    announced: list[tuple[Any, ...]] = []

    async def lost(*args: Any) -> int:
        announced.append(args)
        return 0

    writer = FakeAsyncRedis(connection_pool=fake_redis.connection_pool)
    monkeypatch.setattr(writer, "publish", lost)
    async with watching(fake_redis, poll_s=0.1) as consumer:
        await asyncio.sleep(0.1)
        await ConfigStore(writer, KEYS).set("shop", "max_attempts", 7)

        async def applied() -> bool:
            return consumer.options.max_attempts == 7

        await eventually(applied, within=1.0)
    assert announced, "the change should have tried to announce itself"


async def test_a_value_written_by_hand_that_does_not_fit_is_logged_and_skipped(
    fake_redis: FakeAsyncRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="streamcart.config")
    store = ConfigStore(fake_redis, KEYS)
    async with watching(fake_redis, poll_s=0.1) as consumer:
        await fake_redis.hset(
            KEYS.config_scope("shop"), mapping={"max_attempts": "lots", "discount_pct": "500"}
        )
        await store.set("shop", "greeting", "still here")  # bumps the version

        async def applied() -> bool:
            return bool(consumer.settings.greeting == "still here")

        await eventually(applied, within=1.0)
        assert consumer.options.max_attempts == shop.OPTIONS.max_attempts
        assert consumer.settings.discount_pct == 0
        # The watcher goes on: a later good change still arrives.
        await store.set("shop", "max_attempts", 4)

        async def recovered() -> bool:
            return consumer.options.max_attempts == 4

        await eventually(recovered, within=1.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'max_attempts'" in w and "got 'lots'" in w for w in warnings), warnings
    assert any("discount_pct must be between 0 and 90" in w for w in warnings), warnings


async def test_a_block_time_above_the_socket_timeout_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = FakeAsyncRedis(decode_responses=True, socket_timeout=2.0)
    try:
        await ConfigStore(redis, KEYS).set("shop", "block_ms", 5_000)
        await ConfigStore(redis, KEYS).set("shop", "batch_size", 10)
        async with watching(redis, poll_s=60) as consumer:

            async def loaded() -> bool:
                return consumer.options.batch_size == 10

            await eventually(loaded, within=1.0)
        assert consumer.options.block_ms == shop.OPTIONS.block_ms
        assert "block_ms=5000 refused: reads would outlast" in caplog.text
    finally:
        await redis.aclose()


async def test_handlers_see_the_current_settings_as_ctx_config(
    fake_redis: FakeAsyncRedis,
) -> None:
    publisher = Publisher(fake_redis, KEYS)
    greetings = KEYS.state("shop", "greetings")
    async with running(shop.build(), fake_redis) as consumer:
        await publisher.publish("shop.greet", {}, to="shop")

        async def seen(count: int) -> bool:
            return bool(await fake_redis.llen(greetings) == count)

        await eventually(lambda: seen(1))
        consumer.apply_settings(Knobs(greeting="hi", discount_pct=10))
        await publisher.publish("shop.greet", {}, to="shop")
        await eventually(lambda: seen(2))
    assert await fake_redis.lrange(greetings, 0, -1) == ["hello 0%", "hi 10%"]
