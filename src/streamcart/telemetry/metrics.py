"""Prometheus metrics of worker processes: what each consumer handled, holds and has yet to read.

The metric objects are built on first use, never at import: in a pool, the
children must create their values after ``PROMETHEUS_MULTIPROC_DIR`` is set so
that they write to the shared directory the parent serves from (see
:mod:`streamcart.telemetry.serving`). Gauges say how to combine the processes'
values there: in-flight entries add up over live processes, while lag and
pending are properties of the consumer group that every process samples alike,
so the most recent sample of a live process wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from redis.exceptions import RedisError

from streamcart.bus.worker import WorkerRuntime

log = logging.getLogger("streamcart.metrics")

# Handlers range from a hash increment (~0.1 ms) to slow calls out (~30 s).
HANDLER_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
SAMPLE_INTERVAL_S = 1.0
# A dead letter's type comes from whatever was written to the stream: cap the
# distinct values (and their length) so junk cannot grow the series without bound.
MAX_TYPES_PER_SERVICE = 200
MAX_TYPE_LENGTH = 100
OTHER_TYPE = "other"


class WorkerMetrics:
    """The metric set of a worker process, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        by_type = ("service", "type")
        self.handled = Counter(
            "streamcart_messages_handled",
            "Messages whose handler succeeded and whose effects were committed.",
            by_type,
            registry=registry,
        )
        self.failed = Counter(
            "streamcart_messages_failed",
            "Handler invocations that raised a transient failure.",
            by_type,
            registry=registry,
        )
        self.retried = Counter(
            "streamcart_messages_retried",
            "Messages scheduled for a delayed redelivery through the service inbox.",
            by_type,
            registry=registry,
        )
        self.dead_lettered = Counter(
            "streamcart_messages_dead_lettered",
            "Messages moved to the service's dead-letter stream.",
            by_type,
            registry=registry,
        )
        self.handler_seconds = Histogram(
            "streamcart_handler_seconds",
            "Time from a successful handler invocation's start to its commit.",
            by_type,
            buckets=HANDLER_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "streamcart_in_flight",
            "Entries a worker holds: queued, being handled or waiting for their ack.",
            ("service",),
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.lag = Gauge(
            "streamcart_consumer_lag",
            "Entries of the stream not yet delivered to the service's consumer group.",
            ("service", "stream"),
            multiprocess_mode="livemostrecent",
            registry=registry,
        )
        self.pending = Gauge(
            "streamcart_pending",
            "Entries delivered to the service's consumer group and not yet acknowledged.",
            ("service", "stream"),
            multiprocess_mode="livemostrecent",
            registry=registry,
        )


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """This process's metric set in the default registry, built on the first call."""
    return WorkerMetrics(REGISTRY)


class MetricsObserver:
    """A :class:`~streamcart.bus.observer.ConsumerObserver` that counts into a metric set."""

    def __init__(self, metrics: WorkerMetrics | None = None) -> None:
        self.metrics = metrics or worker_metrics()
        self._types: dict[str, set[str]] = {}

    def handled(self, service: str, message_type: str, seconds: float) -> None:
        label = self._type(service, message_type)
        self.metrics.handled.labels(service, label).inc()
        self.metrics.handler_seconds.labels(service, label).observe(seconds)

    def failed(self, service: str, message_type: str) -> None:
        self.metrics.failed.labels(service, self._type(service, message_type)).inc()

    def retried(self, service: str, message_type: str) -> None:
        self.metrics.retried.labels(service, self._type(service, message_type)).inc()

    def dead_lettered(self, service: str, message_type: str) -> None:
        self.metrics.dead_lettered.labels(service, self._type(service, message_type)).inc()

    def _type(self, service: str, message_type: str) -> str:
        seen = self._types.setdefault(service, set())
        if message_type in seen:
            return message_type
        if len(message_type) > MAX_TYPE_LENGTH or len(seen) >= MAX_TYPES_PER_SERVICE:
            return OTHER_TYPE
        seen.add(message_type)
        return message_type


async def metrics_sampler(
    runtime: WorkerRuntime,
    *,
    metrics: WorkerMetrics | None = None,
    interval_s: float = SAMPLE_INTERVAL_S,
) -> None:
    """A worker companion: samples in-flight entries, lag and pending every
    ``interval_s`` until the worker stops."""
    metrics = metrics or worker_metrics()
    task = asyncio.current_task()
    while not runtime.stop.is_set():
        await sample(runtime, metrics)
        # On Python 3.11, asyncio.wait_for inside the Redis client can swallow a
        # cancel that lands as a command completes: honour it here, or a worker
        # that cancels its companions would wait on this loop forever.
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stop.wait(), interval_s)


async def sample(runtime: WorkerRuntime, metrics: WorkerMetrics) -> None:
    """Set the gauges once: in-flight from the consumer, lag and pending of its
    group on each of its streams from ``XINFO GROUPS`` in one round trip.

    A Redis failure is logged at debug level and leaves those gauges as they were.
    """
    consumer = runtime.consumer
    service = runtime.service.name
    metrics.in_flight.labels(service).set(consumer.in_flight)
    try:
        async with runtime.redis.pipeline(transaction=False) as pipe:
            for stream in consumer.streams:
                pipe.xinfo_groups(stream)
            replies = await pipe.execute(raise_on_error=False)
    except (RedisError, OSError) as exc:
        log.debug("sampling consumer groups failed: %s", exc)
        return
    for stream, reply in zip(consumer.streams, replies, strict=True):
        if isinstance(reply, Exception):
            log.debug("XINFO GROUPS %s failed: %s", stream, reply)
            continue
        group = next((g for g in reply if g.get("name") == consumer.group), None)
        if group is None:
            continue
        metrics.pending.labels(service, stream).set(int(group.get("pending") or 0))
        # Redis reports no lag when deletions in the stream make it unknowable.
        if group.get("lag") is not None:
            metrics.lag.labels(service, stream).set(int(group["lag"]))
