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
from importlib.resources import files

import msgspec
import redis
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from streamcart.bus.connection import connect_sync
from streamcart.bus.keys import Keys
from streamcart.bus.rawtext import is_decimal
from streamcart.errors import ConfigurationError
from streamcart.telemetry import tracing
from streamcart.telemetry.recorder import BufferingProcessor, SpanBuffer, SpanSink
from streamcart.telemetry.sampling import SamplingRule, sdk_sampler
from streamcart.telemetry.spans import ERROR, OK, SpanRecord

log = logging.getLogger("streamcart.tracing")
EXPORTERS = ("redis", "otlp", "console", "none")
# Spans kept in the trace stream (about 1 KB each); older ones are trimmed.
DEFAULT_KEEP = 100_000
# A span reaches `streamcart trace` within about this long (OTEL_BSP_SCHEDULE_DELAY overrides).
EXPORT_DELAY_MS = 1_000
_ADD_SPANS = (files("streamcart.telemetry") / "add_spans.lua").read_text(encoding="utf-8")
_SCOPE = InstrumentationScope("streamcart")
_CODES = {OK: StatusCode.OK, ERROR: StatusCode.ERROR}


class RedisSpanExporter:
    """Writes each batch of spans to the trace stream with one script call.

    It runs on the span buffer's thread with a client of its own and short
    timeouts: a slow or full Redis costs dropped spans, never a handler's time.
    """

    def __init__(
        self, url: str, keys: Keys, *, keep: int = DEFAULT_KEEP, timeout_s: float = 2.0
    ) -> None:
        self.stream = keys.traces()
        self.keep = keep
        self._redis = connect_sync(
            url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._add = self._redis.register_script(_ADD_SPANS)
        self._encode = msgspec.json.Encoder().encode
        self._warned_at = 0.0
        self.dropped = 0

    def export(self, spans: Sequence[SpanRecord]) -> None:
        args: list[str | int | bytes] = [self.keep]
        for span in spans:
            args += (span.trace_id, self._encode(span))
        try:
            self._add(keys=[self.stream], args=args)
        except redis.RedisError as exc:
            self.dropped += len(spans)
            if time.monotonic() - self._warned_at > 60:  # one warning a minute, not per batch
                self._warned_at = time.monotonic()
                log.warning("could not export %d spans to %s: %s", len(spans), self.stream, exc)

    def shutdown(self) -> None:
        self._redis.close()


class SdkExporterSink:
    """Hands spans to an OpenTelemetry SDK exporter (OTLP, console) as it expects them."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self._resources: dict[str, Resource] = {}

    def export(self, spans: Sequence[SpanRecord]) -> None:
        self.exporter.export([self._readable(span) for span in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def _readable(self, span: SpanRecord) -> ReadableSpan:
        resource = self._resources.get(span.service)
        if resource is None:
            resource = self._resources[span.service] = Resource.create({SERVICE_NAME: span.service})
        sampled = TraceFlags(TraceFlags.SAMPLED)
        trace_id = int(span.trace_id, 16)
        parent = (
            SpanContext(trace_id, int(span.parent_id, 16), is_remote=True, trace_flags=sampled)
            if span.parent_id
            else None
        )
        return ReadableSpan(
            name=span.name,
            context=SpanContext(trace_id, int(span.span_id, 16), False, trace_flags=sampled),
            parent=parent,
            resource=resource,
            attributes=span.attributes,
            events=[Event(e.name, e.attributes, e.at_ns) for e in span.events],
            kind=SpanKind[span.kind.upper()],
            status=Status(_CODES.get(span.status, StatusCode.UNSET), span.status_message or None),
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=_SCOPE,
        )


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


def build_sink(name: str, redis_url: str, keys: Keys) -> SpanSink:
    """One sink by its ``OTEL_TRACES_EXPORTER`` name.

    Raises:
        ConfigurationError: ``otlp`` without the optional exporter installed.
    """
    if name == "redis":
        return RedisSpanExporter(redis_url, keys)
    if name == "console":
        return SdkExporterSink(ConsoleSpanExporter())
    return SdkExporterSink(_otlp_exporter_class()())


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
    delay = env.get("OTEL_BSP_SCHEDULE_DELAY", "").strip()
    tracer = build_tracer(
        env.get("OTEL_SERVICE_NAME") or service,
        [build_sink(name, redis_url, keys) for name in names],
        rule,
        delay_ms=int(delay) if is_decimal(delay) and int(delay) > 0 else EXPORT_DELAY_MS,
    )
    tracing.install(tracer)
    return tracer


def build_tracer(
    service: str,
    sinks: Sequence[SpanSink],
    rule: SamplingRule,
    *,
    delay_ms: int = EXPORT_DELAY_MS,
    max_queue: int = 8_192,
) -> tracing.Tracer:
    """A tracer whose spans, sampled by ``rule``, go in batches to ``sinks``
    from a background thread (a full queue drops spans; it never waits).
    ``service`` names the process in every span; spans that user code starts
    through the SDK provider (:func:`use_globally`) land in the same sinks."""
    buffer = SpanBuffer(sinks, max_queue=max_queue, batch=min(512, max_queue), delay_ms=delay_ms)
    provider = TracerProvider(
        sampler=sdk_sampler(rule), resource=Resource.create({SERVICE_NAME: service})
    )
    provider.add_span_processor(BufferingProcessor(buffer))
    return tracing.Tracer(service, rule, buffer, provider)


def use_globally(tracer: tracing.Tracer) -> None:
    """Let user code's ``opentelemetry.trace.get_tracer()`` record into the same traces."""
    trace.set_tracer_provider(tracer.provider)
