"""Trace context through entries, sampling decisions and the OTEL_* settings, on fakeredis.

Spans go to an in-memory exporter here; the Redis exporter and the whole
path across processes are in the integration tier.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from fakeredis import FakeAsyncRedis

from streamcart.bus.publisher import Publisher
from streamcart.errors import ConfigurationError
from streamcart.examples import counter
from streamcart.telemetry import tracing
from streamcart.telemetry.export import (
    RedisSpanExporter,
    SdkExporterSink,
    build_sink,
    build_tracer,
    check_env,
    exporter_names,
    setup_tracing,
)
from streamcart.telemetry.sampling import SamplingRule
from streamcart.telemetry.spans import SpanRecord
from streamcart.telemetry.tracing import TraceLogFilter, parse_traceparent
from tests.unit.support import KEYS, eventually, running
from tests.unit.test_consumer import FAST, INBOX, pending

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Memory:
    """A span sink that keeps what it gets; ``finished()`` flushes the buffer first."""

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.tracer: tracing.Tracer | None = None

    def export(self, spans: Sequence[SpanRecord]) -> None:
        self.spans.extend(spans)

    def shutdown(self) -> None:
        pass

    def finished(self) -> list[SpanRecord]:
        assert self.tracer is not None and self.tracer.flush()
        return self.spans


@pytest.fixture
def spans() -> Iterator[Memory]:
    """Tracing on (everything sampled) for one test, finished spans kept in memory."""
    yield from _traced(SamplingRule(ratio=1.0))


def _traced(rule: SamplingRule) -> Iterator[Memory]:
    memory = Memory()
    memory.tracer = build_tracer("counter", [memory], rule)
    tracing.install(memory.tracer)
    try:
        yield memory
    finally:
        tracing.install(None)
        memory.tracer.shutdown()


async def _handle(redis: FakeAsyncRedis, fields: dict[str, str]) -> list[dict[str, str]]:
    """Run the counter on one injected entry; the events it emitted."""
    await redis.xadd(INBOX, fields)
    async with running(counter.build(FAST), redis):
        await eventually(lambda: _drained(redis))
    return [entry for _, entry in await redis.xrange(KEYS.events("counter"))]


async def _drained(redis: FakeAsyncRedis) -> bool:
    return await pending(redis) == 0 and await redis.xlen(KEYS.events("counter")) > 0


def _increment(**extra: str) -> dict[str, str]:
    return {"type": "counter.increment", "data": json.dumps({"name": "a"}), **extra}


def _by_name(finished: list[SpanRecord]) -> dict[str, SpanRecord]:
    return {span.name: span for span in finished}


# -- traceparent ------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"00-{TRACE}-{PARENT}",  # no flags
        f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{PARENT}-01",  # forbidden version
        f"00-{TRACE}-{PARENT}-01-extra",  # version 00 has exactly four parts
        f"00-{TRACE[:-1]}x-{PARENT}-01",  # not hex
    ],
)
def test_an_invalid_traceparent_is_no_context(value: str) -> None:
    assert parse_traceparent(value) is None


def test_a_valid_traceparent_gives_its_ids_and_sampled_flag() -> None:
    sampled = parse_traceparent(f"00-{TRACE}-{PARENT}-01")
    unsampled = parse_traceparent(f"00-{TRACE}-{PARENT}-00")
    assert sampled is not None and unsampled is not None
    assert (sampled.trace_id, sampled.span_id) == (int(TRACE, 16), int(PARENT, 16))
    assert sampled.trace_flags.sampled and not unsampled.trace_flags.sampled


# -- propagation through a handler ------------------------------------------------
async def test_a_handled_entry_continues_its_trace_and_passes_it_on(
    fake_redis: FakeAsyncRedis, spans: Memory
) -> None:
    [event] = await _handle(fake_redis, _increment(traceparent=f"00-{TRACE}-{PARENT}-01"))

    found = _by_name(spans.finished())
    handling = found["process counter.increment"]
    sending = found["send counter.incremented"]
    assert (handling.trace_id, handling.parent_id) == (TRACE, PARENT)
    assert (sending.trace_id, sending.parent_id) == (TRACE, handling.span_id)
    assert event["traceparent"] == f"00-{TRACE}-{sending.span_id}-01"
    assert (handling.kind, sending.kind) == ("consumer", "producer")
    attributes = handling.attributes
    assert attributes["messaging.destination.name"] == INBOX
    assert attributes["messaging.consumer.group.name"] == "counter"
    assert "streamcart.attempt" not in attributes  # a first attempt, delivered once


async def test_an_entry_without_context_starts_a_trace(
    fake_redis: FakeAsyncRedis, spans: Memory
) -> None:
    [event] = await _handle(fake_redis, _increment())

    handling = _by_name(spans.finished())["process counter.increment"]
    assert handling.parent_id == ""
    assert event["traceparent"].split("-")[1] == handling.trace_id


async def test_an_unsampled_entry_records_nothing_but_passes_the_decision_on(
    fake_redis: FakeAsyncRedis, spans: Memory
) -> None:
    [event] = await _handle(fake_redis, _increment(traceparent=f"00-{TRACE}-{PARENT}-00"))

    assert spans.finished() == []
    assert event["traceparent"] == f"00-{TRACE}-{PARENT}-00"


async def test_a_trace_not_sampled_at_its_start_stays_unsampled_downstream(
    fake_redis: FakeAsyncRedis,
) -> None:
    for memory in _traced(SamplingRule(ratio=0.0, parent_based=True)):
        [event] = await _handle(fake_redis, _increment())
        assert memory.finished() == []
    parent = parse_traceparent(event["traceparent"])
    assert parent is not None and not parent.trace_flags.sampled


async def test_tracing_off_adds_no_fields(fake_redis: FakeAsyncRedis) -> None:
    tracing.install(None)
    [event] = await _handle(fake_redis, _increment())
    assert "traceparent" not in event


async def test_a_publish_outside_a_trace_leaves_the_trace_to_its_consumer(
    fake_redis: FakeAsyncRedis, spans: Memory
) -> None:
    await Publisher(fake_redis, KEYS).publish("counter.increment", {"name": "a"}, to="counter")
    [(_, fields)] = await fake_redis.xrange(INBOX)
    assert "traceparent" not in fields
    assert spans.finished() == []


async def test_retries_and_the_dead_letter_are_events_on_the_span(
    fake_redis: FakeAsyncRedis, spans: Memory
) -> None:
    fields = {"type": "counter.fail", "data": '{"name": "x"}',
              "traceparent": f"00-{TRACE}-{PARENT}-01"}  # fmt: skip
    await fake_redis.xadd(INBOX, fields)
    async with running(counter.build(FAST), fake_redis):

        async def dead() -> bool:
            return await fake_redis.xlen(KEYS.dlq("counter")) == 1

        await eventually(dead)

    handled = [s for s in spans.finished() if s.name == "process counter.fail"]
    assert len(handled) == 2  # the first delivery and the delayed redelivery
    assert {s.parent_id for s in handled} == {PARENT}
    events = [event.name for span in handled for event in span.events]
    assert events.count("attempt_failed") == FAST.max_attempts
    assert events.count("retry_scheduled") == 1
    assert events.count("dead_lettered") == 1
    last = max(handled, key=lambda s: s.start_ns)
    assert last.status == "error" and "broken" in last.status_message
    assert last.attributes["streamcart.attempt"] == FAST.max_attempts


# -- configuration ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "rule"),
    [
        ({}, SamplingRule(1.0, True)),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, SamplingRule(0.0, False)),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, SamplingRule(0.0, True)),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
         SamplingRule(0.25, False)),
        ({"OTEL_TRACES_SAMPLER": "PARENTBASED_TRACEIDRATIO", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
         SamplingRule(0.1, True)),
    ],
)  # fmt: skip
def test_the_sampler_follows_the_otel_variables(env: dict[str, str], rule: SamplingRule) -> None:
    assert SamplingRule.from_env(env) == rule


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_SAMPLER": "sometimes"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
        {"OTEL_TRACES_EXPORTER": "zipkin"},
    ],
)
def test_settings_that_cannot_be_honoured_are_refused_with_the_fix(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_"):
        check_env(env)


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_SAMPLER": "always_off"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_tracing_that_can_record_nothing_is_off(env: dict[str, str]) -> None:
    tracing.install(None)
    assert setup_tracing("counter", "redis://127.0.0.1:1", KEYS, env) is None
    assert tracing.current is None


def test_exporters_are_chosen_by_name() -> None:
    assert exporter_names({}) == ["redis"]
    assert exporter_names({"OTEL_TRACES_EXPORTER": "otlp, console"}) == ["otlp", "console"]
    # The OTLP exporter is installed with the dev extra; its endpoint comes from its own env.
    otlp = build_sink("otlp", "redis://127.0.0.1:1", KEYS)
    try:
        assert isinstance(otlp, SdkExporterSink)
        assert type(otlp.exporter).__name__ == "OTLPSpanExporter"
    finally:
        otlp.shutdown()
    assert isinstance(build_sink("redis", "redis://127.0.0.1:1", KEYS), RedisSpanExporter)


def test_otel_service_name_names_the_service() -> None:
    tracer = setup_tracing(
        "counter", "redis://127.0.0.1:1", KEYS,
        {"OTEL_SERVICE_NAME": "billing", "OTEL_TRACES_EXPORTER": "console"},
    )  # fmt: skip
    try:
        assert tracer is not None
        assert tracer.service == "billing"
        assert tracer.provider.resource.attributes["service.name"] == "billing"
    finally:
        tracing.install(None)
        if tracer is not None:
            tracer.shutdown()


def test_log_lines_carry_the_trace_id_inside_a_trace(spans: Memory) -> None:
    tracer = tracing.current
    assert tracer is not None
    span = tracer.start_handling({}, lambda: ("job", tracing.SpanKind.CONSUMER, {}))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    with tracing.activated(span, {}):
        TraceLogFilter().filter(record)
    assert span is not None
    assert record.trace == f" trace={span.get_span_context().trace_id:032x}"
    TraceLogFilter().filter(record)
    assert record.trace == ""


# -- the recorder ------------------------------------------------------------------
def test_spans_user_code_starts_join_the_trace_and_the_sinks(spans: Memory) -> None:
    tracer = tracing.current
    assert tracer is not None
    span = tracer.start_handling({}, lambda: ("job", tracing.SpanKind.CONSUMER, {}))
    assert span is not None
    with tracing.activated(span, {}):
        with tracer.provider.get_tracer("user code").start_as_current_span("own work") as own:
            own.set_attribute("rows", 3)
        span.set_attribute("done", True)
    found = _by_name(spans.finished())
    assert found["own work"].parent_id == found["job"].span_id
    assert found["own work"].trace_id == found["job"].trace_id
    assert found["own work"].service == "counter"
    assert (found["own work"].attributes, found["job"].attributes) == ({"rows": 3}, {"done": True})


def test_sdk_exporters_get_the_spans_as_the_sdk_would_make_them() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    record = SpanRecord(
        trace_id=TRACE, span_id="a" * 16, parent_id=PARENT, name="orders.place",
        service="orders", kind="server", start_ns=10, end_ns=25, status="error",
        status_message="declined", attributes={"rpc.method": "place"},
    )  # fmt: skip
    SdkExporterSink(memory).export([record])
    [span] = memory.get_finished_spans()
    assert span.context is not None and span.parent is not None
    assert (span.context.trace_id, span.context.span_id) == (int(TRACE, 16), int("a" * 16, 16))
    assert span.parent.span_id == int(PARENT, 16)
    assert (span.kind.name, span.status.status_code.name) == ("SERVER", "ERROR")
    assert span.resource.attributes["service.name"] == "orders"
    assert (span.start_time, span.end_time, dict(span.attributes or {})) == (
        10, 25, {"rpc.method": "place"},
    )  # fmt: skip


def test_a_full_buffer_drops_spans_and_never_waits() -> None:
    release = threading.Event()

    class Stuck:
        def export(self, spans: Sequence[SpanRecord]) -> None:
            release.wait(10)

        def shutdown(self) -> None:
            pass

    tracer = build_tracer("counter", [Stuck()], SamplingRule(1.0), delay_ms=10, max_queue=20)
    try:
        started = time.perf_counter()
        for _ in range(1_000):
            span = tracer.start_handling({}, lambda: ("job", tracing.SpanKind.CONSUMER, {}))
            assert span is not None
            span.end()
        assert time.perf_counter() - started < 1.0
        assert tracer.buffer.dropped >= 1_000 - 2 * 20  # at most a queue and a batch got through
    finally:
        release.set()
        tracer.shutdown()
