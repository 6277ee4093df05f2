"""Where finished spans go, and setting a process's tracing up from ``OTEL_*``.

By default spans are batched into the namespace's capped trace stream, so
``streamcart trace`` can show them with no other infrastructure.
``OTEL_TRACES_EXPORTER`` picks others: ``otlp`` (with the ``otlp`` extra;
``OTEL_EXPORTER_OTLP_ENDPOINT`` and friends are read by that exporter),
``console``, ``redis`` or ``none``, comma-separated.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence

import redis
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import StatusCode

from streamcart.bus.keys import Keys
from streamcart.errors import ConfigurationError
from streamcart.telemetry import tracing
from streamcart.telemetry.sampling import Decided, SamplingRule
from streamcart.telemetry.spans import ERROR, OK, UNSET, SpanEvent, SpanRecord, to_fields

log = logging.getLogger("streamcart.tracing")
EXPORTERS = ("redis", "otlp", "console", "none")
# Spans kept in the trace stream (about 1 KB each); older ones are trimmed.
DEFAULT_KEEP = 100_000
# A span reaches `streamcart trace` within about this long (OTEL_BSP_SCHEDULE_DELAY overrides).
EXPORT_DELAY_MS = 1_000
_STATUS = {StatusCode.OK: OK, StatusCode.ERROR: ERROR, StatusCode.UNSET: UNSET}


def record_of(span: ReadableSpan) -> SpanRecord:
    """The stored form of a finished SDK span."""
    context = span.get_span_context()
    assert context is not None  # an SDK span always has one
    return SpanRecord(
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else "",
        name=span.name,
        service=str(span.resource.attributes.get(SERVICE_NAME, "")),
        kind=span.kind.name.lower(),
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        status=_STATUS[span.status.status_code],
        status_message=span.status.description or "",
        attributes=_plain(span.attributes),
        events=[
            SpanEvent(name=event.name, at_ns=event.timestamp, attributes=_plain(event.attributes))
            for event in span.events
        ],
    )


def _plain(attributes: Mapping[str, object] | None) -> dict[str, object]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


class RedisSpanExporter(SpanExporter):
    """Writes each batch of spans to the trace stream in one pipelined round trip.

    It runs on the batch processor's thread with a client of its own and short
    timeouts: a slow or full Redis costs dropped spans, never a handler's time.
    """

    def __init__(
        self, url: str, keys: Keys, *, keep: int = DEFAULT_KEEP, timeout_s: float = 2.0
    ) -> None:
        self.stream = keys.traces()
        self.keep = keep
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._warned_at = 0.0
        self.dropped = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for span in spans:
                    fields = to_fields(record_of(span))
                    pipe.xadd(self.stream, fields, maxlen=self.keep, approximate=True)
                pipe.execute()
        except redis.RedisError as exc:
            self.dropped += len(spans)
            if time.monotonic() - self._warned_at > 60:  # one warning a minute, not per batch
                self._warned_at = time.monotonic()
                log.warning("could not export %d spans to %s: %s", len(spans), self.stream, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._redis.close()


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for (default: redis).

    Raises:
        ConfigurationError: an unknown name.
    """
    text = env.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "redis"
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}; use any of {', '.join(EXPORTERS)}"
        )
    return [name for name in names if name != "none"]


def check_env(env: Mapping[str, str] | None = None) -> None:
    """Refuse ``OTEL_*`` settings that :func:`setup_tracing` would refuse, before
    any process is started with them.

    Raises:
        ConfigurationError: what is wrong, and the fix.
    """
    env = os.environ if env is None else env
    SamplingRule.from_env(env)
    if "otlp" in exporter_names(env):
        _otlp_exporter_class()


def _otlp_exporter_class() -> type[SpanExporter]:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'streamcart[otlp]'"
        ) from None
    return OTLPSpanExporter


def build_exporter(name: str, redis_url: str, keys: Keys) -> SpanExporter:
    """One exporter by its ``OTEL_TRACES_EXPORTER`` name.

    Raises:
        ConfigurationError: ``otlp`` without the optional exporter installed.
    """
    if name == "redis":
        return RedisSpanExporter(redis_url, keys)
    if name == "console":
        return ConsoleSpanExporter()
    return _otlp_exporter_class()()


def setup_tracing(
    service: str, redis_url: str, keys: Keys, env: Mapping[str, str] | None = None
) -> tracing.Tracer | None:
    """Trace this process as ``service`` (``OTEL_SERVICE_NAME`` wins) and make
    it the process's tracer; ``None`` (and tracing off) when ``OTEL_SDK_DISABLED``
    is true, the sampler can record nothing, or no exporter is asked for.

    Raises:
        ConfigurationError: an ``OTEL_*`` value streamcart cannot honour.
    """
    env = os.environ if env is None else env
    rule = SamplingRule.from_env(env)
    names = exporter_names(env)
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or rule.records_nothing:
        names = []
    if not names:
        tracing.install(None)
        return None
    tracer = build_tracer(
        env.get("OTEL_SERVICE_NAME") or service,
        [build_exporter(name, redis_url, keys) for name in names],
        rule,
        schedule_delay_ms=None if "OTEL_BSP_SCHEDULE_DELAY" in env else EXPORT_DELAY_MS,
    )
    tracing.install(tracer)
    return tracer


def build_tracer(
    service: str,
    exporters: Sequence[SpanExporter],
    rule: SamplingRule,
    *,
    schedule_delay_ms: int | None = EXPORT_DELAY_MS,
    max_queue_size: int | None = None,
) -> tracing.Tracer:
    """A tracer whose spans, sampled by ``rule``, go in batches to ``exporters``
    from a background thread (a full queue drops spans; it never waits).
    ``service`` names the process in every span."""
    sampler = Decided(rule)
    provider = TracerProvider(sampler=sampler, resource=Resource.create({SERVICE_NAME: service}))
    for exporter in exporters:
        processor = BatchSpanProcessor(
            exporter,
            schedule_delay_millis=schedule_delay_ms,
            max_queue_size=max_queue_size,
            max_export_batch_size=None if max_queue_size is None else min(512, max_queue_size),
        )
        provider.add_span_processor(processor)
    return tracing.Tracer(provider, rule, sampler)


def use_globally(tracer: tracing.Tracer) -> None:
    """Let user code's ``opentelemetry.trace.get_tracer()`` record into the same traces."""
    trace.set_tracer_provider(tracer.provider)
