"""Request/reply over streams on a real server."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamcart.bus.connection import connect
from streamcart.bus.consumer import Consumer
from streamcart.bus.context import Context
from streamcart.bus.envelope import build_fields
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.rpc import RpcClient
from streamcart.bus.service import Service
from streamcart.errors import InvalidError, NotFoundError, RpcTimeoutError, UnavailableError
from streamcart.examples import counter
from streamcart.examples.counter import Count
from tests.integration.faults import FaultProxy
from tests.integration.support import Workers, running, wait_for

FAST = ServiceOptions(block_ms=100, max_attempts=2, inline_attempts=2, retry_initial_ms=10)


def _consumer(redis: Redis, namespace: str, name: str = "c1") -> Consumer:
    return Consumer(counter.build(FAST), redis, name=name, keys=Keys(namespace), concurrency=8)


async def _reply_streams(redis: Redis, namespace: str) -> list[str]:
    return [key async for key in redis.scan_iter(match=f"{namespace}:reply:*")]


async def test_a_call_returns_the_typed_reply_and_errors_come_back_typed(
    real_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await real_redis.hset(keys.state("counter", "counts"), "apples", 3)
    async with running(_consumer(real_redis, namespace)), RpcClient(real_redis, keys) as rpc:
        reply = await rpc.call("counter.get", {"name": "apples"}, response_type=Count)
        assert reply == Count("apples", 3)
        assert await rpc.call("counter.get", {"name": "apples"}) == {"name": "apples", "count": 3}
        with pytest.raises(NotFoundError, match="no counter named 'pears'"):
            await rpc.call("counter.get", {"name": "pears"})
        with pytest.raises(InvalidError, match="does not match Get"):
            await rpc.call("counter.get", {"name": 5})
        with pytest.raises(UnavailableError, match="internal error in the counter service") as err:
            await rpc.call("counter.fail", {"name": "x"})  # a transient failure, retried in place
        assert "broken" not in str(err.value)  # the handler's own text stays in its log
        nested = await rpc.call("counter.get_via", {"name": "apples"}, response_type=Count)
        assert nested == Count("apples", 3)
        assert rpc.pending == 0
    # Domain answers are replies, not dead letters; a malformed request is both.
    dead = [f["type"] for _, f in await real_redis.xrange(keys.dlq("counter"))]
    assert dead == ["counter.get"]
    assert await _reply_streams(real_redis, namespace) == []


async def test_no_reply_in_time_is_a_timeout_and_a_late_reply_is_dropped(
    real_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    await real_redis.hset(keys.state("counter", "counts"), "a", 1)
    async with RpcClient(real_redis, keys) as rpc:
        started = time.monotonic()
        with pytest.raises(RpcTimeoutError, match="no reply within 200 ms"):
            await rpc.call("counter.get", {"name": "a"}, timeout=0.2)  # nobody serves it yet
        assert 0.2 <= time.monotonic() - started < 1.0
        assert rpc.pending == 0
        # The stale request's deadline passed: a worker that starts now drops it.
        async with running(_consumer(real_redis, namespace)) as consumer:
            with pytest.raises(RpcTimeoutError):
                await rpc.call("counter.get", {"name": "a", "sleep_ms": 600}, timeout=0.2)
            # The slow reply arrives after its caller gave up: it finds no waiter,
            # and the next call still gets its own answer.
            await asyncio.sleep(0.6)
            assert await rpc.call("counter.get", {"name": "a"}) == {"name": "a", "count": 1}
            assert consumer.stats.skipped == 1  # the request that expired while queued
        assert rpc.pending == 0


@pytest.mark.standalone  # the proxy stands in front of one server
async def test_a_call_through_a_frozen_link_ends_at_its_deadline(
    redis_url: str, real_redis: Redis, namespace: str
) -> None:
    """Redis accepts the request's bytes and never answers: the call raises its
    timeout within about its 1 s (the client's socket timeout is 11 s), and once
    the link heals the same client works, its interrupted connection not reused."""
    keys = Keys(namespace)
    await real_redis.hset(keys.state("counter", "counts"), "a", 1)
    with FaultProxy(redis_url) as proxy:
        client = connect(proxy.url)
        try:
            async with RpcClient(client, keys) as rpc:
                proxy.freeze()
                started = time.monotonic()
                with pytest.raises(RpcTimeoutError, match="no reply within 1000 ms"):
                    await rpc.call("counter.get", {"name": "a"}, timeout=1.0)
                assert time.monotonic() - started < 3.0
                assert rpc.pending == 0
                proxy.passthrough()
                await client.set(keys.state("counter", "probe"), "p")
                assert await client.get(keys.state("counter", "probe")) == "p"
                async with running(_consumer(real_redis, namespace)):
                    assert await rpc.call("counter.get", {"name": "a"}) == {"name": "a", "count": 1}
        finally:
            await client.aclose()


async def test_a_request_past_its_deadline_is_never_executed(
    real_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    expired = int(time.time() * 1000) - 1_000
    fields = build_fields(
        "counter.increment", {"name": "late"}, extra={"deadline_ms": str(expired)}
    )
    await real_redis.xadd(keys.inbox("counter"), fields)
    async with running(_consumer(real_redis, namespace)) as consumer:

        async def dropped() -> bool:
            return consumer.stats.skipped == 1

        await wait_for(dropped, within=5, what="the expired request dropped")
    assert consumer.stats.skipped == 1 and consumer.stats.handled == 0
    assert await real_redis.hget(keys.state("counter", "counts"), "late") is None
    assert (await real_redis.xpending(keys.inbox("counter"), "counter"))["pending"] == 0


async def test_nested_calls_never_outlive_the_outer_deadline(
    real_redis: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    async with running(_consumer(real_redis, namespace)), RpcClient(real_redis, keys) as rpc:
        before = int(time.time() * 1000)
        with pytest.raises(NotFoundError):
            await rpc.call("counter.get_via", {"name": "none"}, timeout=2.0)
    requests = [f for _, f in await real_redis.xrange(keys.inbox("counter"))]
    outer, inner = requests[0], requests[1]
    assert (outer["type"], inner["type"]) == ("counter.get_via", "counter.get")
    # The inner call asked for 30 s but inherits the outer request's 2 s deadline.
    assert int(inner["deadline_ms"]) == int(outer["deadline_ms"]) <= before + 2_000 + 50


async def test_a_nested_call_never_outlives_the_handler_that_makes_it(
    real_redis: Redis, namespace: str
) -> None:
    """An event's handler (no caller, so no deadline of its own) calls with a 30 s
    timeout under a 0.5 s handler_timeout_ms: the request carries the handler's limit."""
    keys = Keys(namespace)
    service = Service("caller", options=ServiceOptions(handler_timeout_ms=500, block_ms=100))

    @service.on("caller.go")
    async def go(msg: dict[str, object], ctx: Context) -> None:
        await ctx.call("nobody.get", {}, timeout=30)

    consumer = Consumer(service, real_redis, name="c1", keys=keys, concurrency=2)
    async with running(consumer):
        before_ms = time.time() * 1000
        await real_redis.xadd(keys.inbox("caller"), {"type": "caller.go", "data": "{}"})

        async def nested() -> list[tuple[str, dict[str, str]]]:
            return list(await real_redis.xrange(keys.inbox("nobody")))

        [(_, request)] = await wait_for(nested, within=10, what="the nested request")
        seen_ms = time.time() * 1000
    assert before_ms + 499 <= int(request["deadline_ms"]) <= seen_ms + 500


@pytest.mark.chaos
async def test_nothing_is_left_behind_after_many_calls_with_responders_killed(
    redis_url: str, real_redis: Redis, namespace: str, tmp_path: Path
) -> None:
    """10,000 calls, 100 at a time, while one of two responders is SIGKILLed:
    every call ends (reply or timeout), no waiter and no reply stream remains."""
    keys = Keys(namespace)
    await real_redis.hset(keys.state("counter", "counts"), "n", 7)
    outcomes = {"ok": 0, "timeout": 0}
    with Workers(redis_url, namespace, tmp_path) as workers:
        victim = workers.start("counter")
        workers.start("counter")
        await victim.consumer_name()
        # Our own client: 100 calls in flight need more connections than the fixture's pool.
        client = connect(redis_url)
        async with RpcClient(client, keys) as rpc:

            async def one() -> None:
                try:
                    await rpc.call("counter.get", {"name": "n"}, timeout=1.0)
                    outcomes["ok"] += 1
                except RpcTimeoutError:
                    outcomes["timeout"] += 1

            for batch in range(100):
                if batch == 30:
                    victim.send(signal.SIGKILL)
                await asyncio.gather(*(one() for _ in range(100)))
            assert rpc.pending == 0
        await client.aclose()
        assert sum(outcomes.values()) == 10_000
        assert outcomes["ok"] >= 9_000, outcomes
    assert await _reply_streams(real_redis, namespace) == []


async def test_a_breaker_stops_calls_to_a_service_that_keeps_failing(
    real_redis: Redis, namespace: str
) -> None:
    """After enough timeouts the circuit opens: the next call fails at once
    with CircuitOpenError and sends nothing to the dead service's inbox."""
    from streamcart.errors import CircuitOpenError
    from streamcart.resilience.breaker import Breakers, BreakerSettings

    keys = Keys(namespace)
    breakers = Breakers(BreakerSettings(min_calls=2, failure_rate=0.5, cool_down_s=30))
    async with RpcClient(real_redis, keys, breakers=breakers) as rpc:
        for _ in range(2):
            with pytest.raises(RpcTimeoutError):
                await rpc.call("counter.get", {"name": "a"}, timeout=0.1)
        sent = await real_redis.xlen(keys.inbox("counter"))
        started = time.monotonic()
        with pytest.raises(CircuitOpenError, match="counter is unavailable: circuit open"):
            await rpc.call("counter.get", {"name": "a"}, timeout=5)
        assert time.monotonic() - started < 0.1
        assert await real_redis.xlen(keys.inbox("counter")) == sent
        assert breakers.get("counter").state == "open"
