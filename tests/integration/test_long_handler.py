"""A handler that runs longer than the claim timeout.

While its worker lives, the worker keeps renewing its claim, so no other
worker takes the entry over and the handler runs once. When the worker is
frozen (SIGSTOP), another one takes the entry over after the timeout and
finishes it; the frozen worker's late commit, once it resumes, is rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streamcart.bus.consumer import Consumer
from streamcart.bus.context import Context
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from tests.integration.services import SLOW_HANDLER_MS, SLOW_OPTIONS
from tests.integration.support import (
    CounterKeys,
    Worker,
    Workers,
    pending,
    running,
    wait_for,
)

SLOW = "tests.integration.services:slow"
GRACE_S = SLOW_OPTIONS.shutdown_grace_s + 10
WORK = {"type": "slow.work", "data": '{"name": "w"}', "id": "m1"}


HUNG = ServiceOptions(
    handler_timeout_ms=300, max_attempts=3, inline_attempts=2, retry_initial_ms=10, block_ms=100
)


def _hanging() -> Service:
    """A handler that records its effects through the context, then never returns."""
    service = Service("hung", options=HUNG)

    @service.on("hung.work")
    async def work(msg: dict[str, object], ctx: Context) -> None:
        await ctx.redis.hincrby(ctx.key("started"), ctx.message.id, 1)
        ctx.tx.hincrby(ctx.key("applied"), ctx.message.id, 1)
        ctx.publish("hung.done", {})
        await asyncio.Event().wait()

    @service.on("hung.stubborn")
    async def stubborn(msg: dict[str, object], ctx: Context) -> None:
        """Swallows its cancellation and returns late, effects and all."""
        await ctx.redis.hincrby(ctx.key("started"), ctx.message.id, 1)
        ctx.tx.hincrby(ctx.key("applied"), ctx.message.id, 1)
        ctx.publish("hung.done", {})
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    @service.on("hung.converts")
    async def converts(msg: dict[str, object], ctx: Context) -> None:
        """Turns its cancellation into an error of its own."""
        await ctx.redis.hincrby(ctx.key("started"), ctx.message.id, 1)
        ctx.tx.hincrby(ctx.key("applied"), ctx.message.id, 1)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("interrupted") from None

    @service.on("hung.quick")
    async def quick(msg: dict[str, object], ctx: Context) -> None:
        """Uses a timeout of its own, as handlers do: a cancel left over from a
        timed-out attempt on the same task would break it."""
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        ctx.tx.hincrby(ctx.key("applied"), ctx.message.id, 1)

    return service


async def _consumers(redis: Redis, keys: CounterKeys) -> list[str]:
    try:
        rows = await redis.xinfo_consumers(keys.inbox, keys.group)
    except ResponseError:  # no stream or group yet
        return []
    return [row["name"] for row in rows]


async def _consumers_at_least(redis: Redis, keys: CounterKeys, count: int) -> bool:
    return len(await _consumers(redis, keys)) >= count


async def _field(redis: Redis, key: str, field: str) -> str | None:
    return await redis.hget(key, field)


async def _equals(redis: Redis, key: str, field: str, value: str) -> bool:
    return await _field(redis, key, field) == value


async def _stop(worker: Worker) -> None:
    """SIGTERM, then wait: a graceful stop lets a running handler finish first."""
    worker.send(signal.SIGTERM)
    assert await worker.wait_exit(within=GRACE_S) == 0, worker.tail()


async def test_live_worker_keeps_its_long_handler_entry(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """A 3 s handler under a 1 s claim timeout, two workers running: the entry
    keeps one owner and one delivery while the handler runs, it is never
    reclaimed, and the handler runs exactly once."""
    keys = CounterKeys(namespace, "slow")
    with Workers(redis_url, namespace, tmp_path) as workers:
        both = [workers.start(SLOW), workers.start(SLOW)]
        for worker in both:
            await worker.consumer_name()
        await wait_for(
            lambda: _consumers_at_least(real_redis, keys, 2),
            within=20,
            what="both workers reading",
            context=workers.tails,
        )
        await real_redis.xadd(
            keys.inbox, {"type": "slow.work", "data": '{"name": "w"}', "id": "m1"}
        )

        # Watch the pending entry for the whole run of the handler.
        samples: list[dict[str, Any]] = []

        async def done_while_sampling() -> bool:
            rows = await real_redis.xpending_range(keys.inbox, keys.group, "-", "+", 10)
            samples.extend(rows)
            applied = await _field(real_redis, keys.state("applied"), "m1") == "1"
            return applied and not rows

        await wait_for(
            done_while_sampling,
            within=SLOW_HANDLER_MS / 1000 + 15,
            what="the message applied and acknowledged",
            context=workers.tails,
        )
        for worker in both:
            await _stop(worker)

    assert len(samples) > 10, "the entry was hardly ever seen pending"
    assert {row["consumer"] for row in samples} == {samples[0]["consumer"]}, "it changed hands"
    assert {row["times_delivered"] for row in samples} == {1}, "it was delivered again"
    assert max(row["time_since_delivered"] for row in samples) < SLOW_OPTIONS.claim_timeout_ms
    assert await real_redis.hgetall(keys.state("started")) == {"m1": "1"}
    assert await real_redis.hgetall(keys.state("finished")) == {"m1": "1"}
    assert await real_redis.hgetall(keys.state("applied")) == {"m1": "1"}
    assert await real_redis.hgetall(keys.counts) == {"w": "1"}
    assert await pending(real_redis, keys.inbox, keys.group) == 0


@pytest.mark.parametrize("message_type", ["hung.work", "hung.stubborn", "hung.converts"])
async def test_a_hung_handler_is_failed_at_its_timeout_and_dead_lettered_uncommitted(
    real_redis: Redis, namespace: str, message_type: str
) -> None:
    """A handler that never returns (or returns only once cancelled): each attempt
    is failed after ``handler_timeout_ms`` and retried, and after ``max_attempts``
    the message is a dead letter saying why; none of the attempts committed anything."""
    keys = CounterKeys(namespace, "hung")
    # One worker task: the message after the hung one runs on the task that was cancelled.
    consumer = Consumer(_hanging(), real_redis, name="c1", keys=Keys(namespace), concurrency=1)
    async with running(consumer):
        await real_redis.xadd(keys.inbox, {"type": message_type, "data": "{}", "id": "m1"})

        async def dead_letters() -> list[dict[str, str]]:
            return [fields for _, fields in await real_redis.xrange(keys.dlq)]

        dead = await wait_for(dead_letters, within=20, what="the hung message dead-lettered")
        await real_redis.xadd(keys.inbox, {"type": "hung.quick", "data": "{}", "id": "m2"})

        async def quick_applied() -> bool:
            return await real_redis.hget(keys.applied, "m2") == "1"

        await wait_for(quick_applied, within=10, what="the next message handled")
        await wait_for(
            lambda: _no_pending(real_redis, keys), within=5, what="the entries acknowledged"
        )
    assert len(dead) == 1 and dead[0]["id"] == "m1"
    assert await real_redis.xlen(keys.dlq) == 1  # the next message handled, not failed
    error = f"HandlerTimeoutError: {message_type} still running after handler_timeout_ms=300"
    assert dead[0]["dlq_error"] == error
    assert dead[0]["dlq_attempts"] == str(HUNG.max_attempts)
    assert await real_redis.hgetall(keys.state("started")) == {"m1": str(HUNG.max_attempts)}
    assert await real_redis.hgetall(keys.applied) == {"m2": "1"}  # m1: never committed
    assert await real_redis.xlen(f"{namespace}:events:hung") == 0


async def _no_pending(redis: Redis, keys: CounterKeys) -> bool:
    return await pending(redis, keys.inbox, keys.group) == 0


@pytest.mark.chaos
async def test_frozen_worker_is_taken_over_and_its_late_commit_rejected(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """SIGSTOP worker A inside its handler: worker B claims the entry after the
    timeout and applies it; A, resumed with SIGCONT, finishes its handler but
    its commit is rejected, so the message stays applied once."""
    keys = CounterKeys(namespace, "slow")
    started, finished = keys.state("started"), keys.state("finished")
    with Workers(redis_url, namespace, tmp_path) as workers:
        a = workers.start(SLOW)
        a_name = await a.consumer_name()
        await real_redis.xadd(
            keys.inbox, {"type": "slow.work", "data": '{"name": "w"}', "id": "m1"}
        )
        await wait_for(
            lambda: _field(real_redis, started, "m1"),
            within=20,
            what="A to start the handler",
            context=workers.tails,
        )
        a.send(signal.SIGSTOP)
        try:
            b = workers.start(SLOW)
            b_name = await b.consumer_name()
            assert b_name != a_name

            async def b_applied() -> bool:
                return await _field(real_redis, keys.state("applied"), "m1") == "1"

            await wait_for(
                b_applied,
                within=SLOW_HANDLER_MS / 1000 + 20,
                what="B to apply the message",
                context=workers.tails,
            )
            assert await _field(real_redis, started, "m1") == "2"
            assert await _field(real_redis, finished, "m1") == "1"
            assert "reclaimed 1 entries" in b.log()
        finally:
            a.send(signal.SIGCONT)

        # A wakes past its sleep and goes on to commit; a graceful stop waits
        # for that handler, so its commit attempt is over once A has exited.
        await wait_for(
            lambda: _equals(real_redis, finished, "m1", "2"),
            within=20,
            what="A to finish its handler",
            context=workers.tails,
        )
        await _stop(a)
        await _stop(b)

    assert await real_redis.hgetall(keys.state("applied")) == {"m1": "1"}
    assert await real_redis.hgetall(keys.counts) == {"w": "1"}
    assert await pending(real_redis, keys.inbox, keys.group) == 0
    assert await real_redis.xlen(keys.dlq) == 0
