"""Worker metrics on fakeredis: what the observer counts and what the sampler reads."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import pytest
from fakeredis import FakeAsyncRedis
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from streamcart import Context, Service, ServiceOptions
from streamcart.bus.consumer import Consumer
from streamcart.bus.publisher import Publisher
from streamcart.bus.worker import WorkerRuntime
from streamcart.examples import counter
from streamcart.telemetry.metrics import (
    HANDLER_BUCKETS,
    MAX_TYPES_PER_SERVICE,
    OTHER_TYPE,
    MetricsObserver,
    WorkerMetrics,
    metrics_sampler,
    sample,
)
from tests.unit.support import KEYS, eventually, running

FAST = ServiceOptions(block_ms=20, retry_initial_ms=10, max_attempts=2, claim_timeout_ms=500)
INBOX = KEYS.inbox("counter")


class Job(msgspec.Struct):
    name: str


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> WorkerMetrics:
    return WorkerMetrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series that does not exist (yet)."""
    return registry.get_sample_value(name, labels) or 0.0


def runtime_for(consumer: Consumer) -> WorkerRuntime:
    return WorkerRuntime(
        consumer.service, consumer.redis, KEYS, consumer, instance_id="i1", stop=asyncio.Event()
    )


def consuming(service: Service, redis: Redis, metrics: WorkerMetrics) -> Any:
    return running(service, redis, concurrency=4, observers=[MetricsObserver(metrics)])


# -- the observer ---------------------------------------------------------------
def test_each_outcome_counts_in_its_own_service_and_type_series(
    registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    observer = MetricsObserver(metrics)
    observer.handled("orders", "orders.place", 0.002)
    observer.handled("orders", "orders.place", 0.004)
    observer.handled("orders", "orders.get", 0.001)
    observer.failed("orders", "orders.place")
    observer.retried("orders", "orders.place")
    observer.dead_lettered("cart", "cart.add_item")

    place = {"service": "orders", "type": "orders.place"}
    assert value(registry, "streamcart_messages_handled_total", **place) == 2
    assert (
        value(registry, "streamcart_messages_handled_total", service="orders", type="orders.get")
        == 1
    )
    assert value(registry, "streamcart_messages_failed_total", **place) == 1
    assert value(registry, "streamcart_messages_retried_total", **place) == 1
    assert value(registry, "streamcart_messages_dead_lettered_total", **place) == 0
    cart = {"service": "cart", "type": "cart.add_item"}
    assert value(registry, "streamcart_messages_dead_lettered_total", **cart) == 1
    assert value(registry, "streamcart_messages_handled_total", **cart) == 0
    assert value(registry, "streamcart_handler_seconds_count", **place) == 2
    assert value(registry, "streamcart_handler_seconds_sum", **place) == pytest.approx(0.006)


def test_handler_latency_buckets_span_a_tenth_of_a_millisecond_to_thirty_seconds(
    registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    assert HANDLER_BUCKETS[0] == 0.0001
    assert HANDLER_BUCKETS[-1] == 30.0
    assert list(HANDLER_BUCKETS) == sorted(HANDLER_BUCKETS)
    observer = MetricsObserver(metrics)
    for seconds in (0.00005, 0.0003, 0.0003, 0.02, 20.0, 45.0):
        observer.handled("counter", "counter.increment", seconds)

    def bucket(le: str) -> float:
        return value(
            registry,
            "streamcart_handler_seconds_bucket",
            service="counter",
            type="counter.increment",
            le=le,
        )

    assert bucket("0.0001") == 1
    assert bucket("0.00025") == 1
    assert bucket("0.0005") == 3
    assert bucket("0.025") == 4
    assert bucket("10.0") == 4
    assert bucket("30.0") == 5
    assert bucket("+Inf") == 6


def test_junk_dead_letter_types_cannot_grow_the_series_without_bound(
    registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    observer = MetricsObserver(metrics)
    for i in range(MAX_TYPES_PER_SERVICE + 50):
        observer.dead_lettered("counter", f"junk.{i}")
    observer.dead_lettered("counter", "x" * 10_000)
    observer.dead_lettered("counter", "junk.0")  # a type seen before keeps its series

    types = {
        s.labels["type"]
        for family in registry.collect()
        if family.name == "streamcart_messages_dead_lettered"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert len(types) == MAX_TYPES_PER_SERVICE + 1
    other = value(
        registry, "streamcart_messages_dead_lettered_total", service="counter", type=OTHER_TYPE
    )
    assert other == 51
    assert (
        value(registry, "streamcart_messages_dead_lettered_total", service="counter", type="junk.0")
        == 2
    )


async def test_a_running_consumer_reports_every_outcome_to_the_metrics(
    fake_redis: FakeAsyncRedis, registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    publisher = Publisher(fake_redis, KEYS)
    for _ in range(3):
        await publisher.publish("counter.increment", {"name": "a"}, to="counter")
    await publisher.publish("counter.fail", {"name": "b"}, to="counter")
    await fake_redis.xadd(INBOX, {"type": "counter.nosuch", "data": "{}"})

    async with consuming(counter.build(FAST), fake_redis, metrics):

        async def settled() -> bool:
            """three handled, the failing one dead-lettered after its retry, the unknown one too"""
            return await fake_redis.xlen(KEYS.dlq("counter")) == 2

        await eventually(settled)

    def count(name: str, type_: str) -> float:
        return value(registry, f"streamcart_messages_{name}_total", service="counter", type=type_)

    assert count("handled", "counter.increment") == 3
    assert (
        value(
            registry,
            "streamcart_handler_seconds_count",
            service="counter",
            type="counter.increment",
        )
        == 3
    )
    # max_attempts=2: both run in place and fail, then it is dead-lettered.
    assert count("failed", "counter.fail") == 2
    assert count("dead_lettered", "counter.fail") == 1
    assert count("dead_lettered", "counter.nosuch") == 1
    assert count("handled", "counter.fail") == 0


async def test_a_retry_through_the_inbox_is_counted(
    fake_redis: FakeAsyncRedis, registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    options = ServiceOptions(block_ms=20, retry_initial_ms=10, max_attempts=5, inline_attempts=1)
    await Publisher(fake_redis, KEYS).publish("counter.fail", {"name": "b"}, to="counter")
    async with consuming(counter.build(options), fake_redis, metrics):

        async def retried() -> bool:
            """the failing message was scheduled for redelivery at least once"""
            labels = {"service": "counter", "type": "counter.fail"}
            return value(registry, "streamcart_messages_retried_total", **labels) >= 1

        await eventually(retried)


# -- the sampler ----------------------------------------------------------------
async def test_the_sampler_reads_lag_and_pending_of_the_group(
    fake_redis: FakeAsyncRedis, registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    await fake_redis.xgroup_create(INBOX, "counter", id="0", mkstream=True)
    for i in range(5):
        await fake_redis.xadd(INBOX, {"type": "counter.increment", "data": f'{{"name": "{i}"}}'})
    await fake_redis.xreadgroup("counter", "someone", {INBOX: ">"}, count=2)

    consumer = Consumer(counter.build(FAST), fake_redis, name="c1", keys=KEYS)
    await sample(runtime_for(consumer), metrics)

    labels = {"service": "counter", "stream": INBOX}
    assert value(registry, "streamcart_consumer_lag", **labels) == 3
    assert value(registry, "streamcart_pending", **labels) == 2
    assert registry.get_sample_value("streamcart_in_flight", {"service": "counter"}) == 0


async def test_the_sampler_reports_what_the_consumer_holds(
    fake_redis: FakeAsyncRedis, registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    release = asyncio.Event()
    svc = Service("counter", options=FAST)

    @svc.on("counter.slow")
    async def slow(msg: Job, ctx: Context) -> None:
        await release.wait()

    for _ in range(3):
        await Publisher(fake_redis, KEYS).publish("counter.slow", {"name": "a"}, to="counter")
    async with consuming(svc, fake_redis, metrics) as consumer:
        sampler = asyncio.create_task(
            metrics_sampler(runtime_for(consumer), metrics=metrics, interval_s=0.01)
        )
        try:

            async def holding_three() -> bool:
                """in-flight 3, pending 3, lag 0"""
                labels = {"service": "counter", "stream": INBOX}
                return (
                    value(registry, "streamcart_in_flight", service="counter") == 3
                    and value(registry, "streamcart_pending", **labels) == 3
                    and registry.get_sample_value("streamcart_consumer_lag", labels) == 0
                )

            await eventually(holding_three)
            release.set()

            async def drained() -> bool:
                """in-flight and pending back to 0"""
                labels = {"service": "counter", "stream": INBOX}
                return (
                    value(registry, "streamcart_in_flight", service="counter") == 0
                    and value(registry, "streamcart_pending", **labels) == 0
                )

            await eventually(drained)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)


async def test_a_stream_without_the_group_is_skipped_and_the_others_are_sampled(
    fake_redis: FakeAsyncRedis, registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    svc = Service("counter", options=FAST)

    @svc.on("counter.work")
    async def work(msg: Job, ctx: Context) -> None: ...

    @svc.on("order.placed")
    async def placed(msg: Job, ctx: Context) -> None: ...

    await fake_redis.xgroup_create(INBOX, "counter", id="0", mkstream=True)
    await fake_redis.xadd(INBOX, {"type": "counter.work", "data": "{}"})
    consumer = Consumer(svc, fake_redis, name="c1", keys=KEYS)
    assert KEYS.events("order") in consumer.streams  # it does not exist at all yet

    await sample(runtime_for(consumer), metrics)

    assert value(registry, "streamcart_consumer_lag", service="counter", stream=INBOX) == 1
    missing = {"service": "counter", "stream": KEYS.events("order")}
    assert registry.get_sample_value("streamcart_consumer_lag", missing) is None


async def test_an_unreachable_redis_leaves_the_group_gauges_and_sets_in_flight(
    registry: CollectorRegistry, metrics: WorkerMetrics
) -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        consumer = Consumer(counter.build(FAST), unreachable, name="c1", keys=KEYS)
        await sample(runtime_for(consumer), metrics)  # logged, not raised
    finally:
        await unreachable.aclose()
    assert registry.get_sample_value("streamcart_in_flight", {"service": "counter"}) == 0
    lag = {"service": "counter", "stream": INBOX}
    assert registry.get_sample_value("streamcart_consumer_lag", lag) is None


class SwallowingPipeline:
    """A pipeline whose round trip eats a cancellation and completes, as redis-py's
    can on Python 3.11 (``asyncio.wait_for`` returns a result that is already there)."""

    def __init__(self, entered: asyncio.Event) -> None:
        self.entered = entered
        self.commands = 0

    async def __aenter__(self) -> SwallowingPipeline:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def xinfo_groups(self, stream: str) -> None:
        self.commands += 1

    async def execute(self, raise_on_error: bool = True) -> list[list[dict[str, object]]]:
        self.entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        return [[] for _ in range(self.commands)]


class SwallowingRedis:
    def __init__(self) -> None:
        self.entered = asyncio.Event()

    def pipeline(self, transaction: bool = True) -> SwallowingPipeline:
        return SwallowingPipeline(self.entered)


async def test_the_sampler_stops_when_cancelled_even_if_the_client_swallows_it(
    metrics: WorkerMetrics,
) -> None:
    redis = SwallowingRedis()
    consumer = Consumer(counter.build(FAST), redis, name="c1", keys=KEYS)  # type: ignore[arg-type]
    runtime = WorkerRuntime(
        consumer.service,
        redis,
        KEYS,
        consumer,
        instance_id="i1",
        stop=asyncio.Event(),  # type: ignore[arg-type]
    )
    sampler = asyncio.create_task(metrics_sampler(runtime, metrics=metrics, interval_s=0.01))
    await asyncio.wait_for(redis.entered.wait(), 5)
    sampler.cancel()
    done, _ = await asyncio.wait([sampler], timeout=2)
    assert done, "the sampler went on after being cancelled: a worker could never stop"
    assert sampler.cancelled()


async def test_the_sampler_returns_once_the_worker_stops(
    fake_redis: FakeAsyncRedis, metrics: WorkerMetrics
) -> None:
    consumer = Consumer(counter.build(FAST), fake_redis, name="c1", keys=KEYS)
    runtime = runtime_for(consumer)
    sampler = asyncio.create_task(metrics_sampler(runtime, metrics=metrics, interval_s=30))
    await asyncio.sleep(0.05)
    runtime.stop.set()
    await asyncio.wait_for(sampler, 2)
