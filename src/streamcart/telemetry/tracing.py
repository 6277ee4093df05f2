"""Spans around messages, calls and requests, and the trace context they carry.

A process has at most one :class:`Tracer` (:func:`install`); ``current`` is
``None`` while tracing is off, and every instrumented path begins with that
one branch. The W3C trace context travels in an entry's ``traceparent`` and
``tracestate`` fields. A message that is not sampled gets no span, but what
its handler sends on carries the same "not sampled" decision, so a trace is
recorded whole or not at all.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from streamcart.bus.envelope import TRACEPARENT, TRACESTATE
from streamcart.telemetry.recorder import RecordedSpan, SpanBuffer
from streamcart.telemetry.sampling import SamplingRule

log = logging.getLogger("streamcart.tracing")

# What a handler of an unsampled message passes on: its traceparent, or "" for
# a trace that starts unsampled here (a new id is made when something is sent).
_unsampled: ContextVar[str | None] = ContextVar("streamcart_unsampled", default=None)
# A span's name, kind and attributes.
SpanStart = tuple[str, SpanKind, dict[str, Any]]
MESSAGING_SYSTEM = "redis"
RPC_SYSTEM = "streamcart"
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class Tracer:
    """Starts streamcart's spans after deciding by ``rule``; they are
    :class:`RecordedSpan` and go to ``buffer``. ``provider`` is the SDK
    provider for spans user code starts (see ``export.use_globally``)."""

    def __init__(
        self, service: str, rule: SamplingRule, buffer: SpanBuffer, provider: TracerProvider
    ) -> None:
        self.service = service
        self.rule = rule
        self.buffer = buffer
        self.provider = provider

    def start_handling(
        self, fields: Mapping[str, str], describe: Callable[[], SpanStart]
    ) -> Span | None:
        """The span for handling an entry with ``fields`` (or an HTTP request
        with these headers), a child of the trace context it carries (or a new
        trace); ``None`` when it is not sampled.
        ``describe`` gives the span's name, kind and attributes, and is only
        called for a span that is recorded."""
        parent = parse_traceparent(fields.get(TRACEPARENT, ""))
        if parent is None:
            if self.rule.new_trace():
                return self._start(*describe(), None)
            return None
        if not self.rule.continued_trace(parent.trace_id, parent.trace_flags.sampled):
            return None
        state = fields.get(TRACESTATE)
        if state:
            parent = SpanContext(
                parent.trace_id, parent.span_id, is_remote=True, trace_flags=parent.trace_flags,
                trace_state=TraceState.from_header([state]),
            )  # fmt: skip
        return self._start(*describe(), parent)

    def start_outgoing(
        self,
        fields: MutableMapping[str, str],
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        *,
        may_start_trace: bool,
    ) -> Span | None:
        """A span for sending ``fields`` (a message or a request), a child of the
        current span; its context goes into ``fields``. Outside any trace it
        starts one only if ``may_start_trace``. ``None``, with the current
        decision passed on, when not recorded."""
        parent: SpanContext | None = trace.get_current_span().get_span_context()
        if parent is not None and parent.is_valid:
            record = parent.trace_flags.sampled
        elif _unsampled.get() is not None or not may_start_trace:
            record = False
        else:
            record, parent = self.rule.new_trace(), None
        if not record:
            inject(fields)
            return None
        span = self._start(name, kind, attributes, parent)
        _write_context(fields, span.context)
        return span

    def _start(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], parent: SpanContext | None
    ) -> RecordedSpan:
        if parent is None:
            trace_id, state = random.getrandbits(128) or 1, None
        else:
            trace_id, state = parent.trace_id, parent.trace_state
        context = SpanContext(
            trace_id, random.getrandbits(64) or 1, is_remote=False, trace_flags=_SAMPLED,
            trace_state=state,
        )  # fmt: skip
        return RecordedSpan(self.buffer, self.service, name, context, parent, kind, attributes)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Export every span finished so far (tests, and before a process exits)."""
        return self.buffer.flush(timeout_s)

    def shutdown(self) -> None:
        """Export what is buffered and stop the exporters."""
        self.provider.shutdown()
        self.buffer.shutdown()


current: Tracer | None = None


def install(tracer: Tracer | None) -> None:
    """Make ``tracer`` this process's tracer (``None``: tracing off)."""
    global current
    current = tracer


@contextlib.contextmanager
def activated(
    span: Span | None, fields: Mapping[str, str], *, errors: bool = True
) -> Iterator[Span | None]:
    """Run the block inside ``span`` (ended on exit; failed if the block raises,
    unless not ``errors``), or, when the entry was not sampled, with that
    decision kept for whatever the block sends on."""
    if span is None:
        token = keep_unsampled(fields)
        try:
            yield None
        finally:
            forget_unsampled(token)
        return
    attached = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    except BaseException as exc:
        if errors:
            failed(span, exc)
        raise
    finally:
        otel_context.detach(attached)
        span.end()


def keep_unsampled(fields: Mapping[str, str]) -> Token[str | None]:
    """Remember, for what this task sends next, that the entry with ``fields``
    is not recorded (what :func:`activated` does for ``None``, without a
    context manager on the hot path)."""
    incoming = fields.get(TRACEPARENT)
    return _unsampled.set(_as_unsampled(incoming) if incoming else "")


def forget_unsampled(token: Token[str | None]) -> None:
    _unsampled.reset(token)


def inject(fields: MutableMapping[str, str]) -> None:
    """Put the current trace context, sampled or not, into outgoing ``fields``."""
    if current is None:
        return
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        _write_context(fields, context)
        return
    passed = _unsampled.get()
    if passed is not None:
        fields[TRACEPARENT] = passed or new_unsampled_traceparent()


def event(name: str, **attributes: str | int | float | bool) -> None:
    """Note ``name`` on the current span (a retry, a dead letter...)."""
    if current is not None:
        trace.get_current_span().add_event(name, attributes)


def failed(span: Span | None, error: BaseException | str) -> None:
    """Mark ``span`` (default: the current one) as failed with ``error``."""
    if current is None:
        return
    span = span or trace.get_current_span()
    if isinstance(error, BaseException):
        span.record_exception(error)
        error = f"{type(error).__name__}: {error}"
    span.set_status(Status(StatusCode.ERROR, error))


def current_trace_id() -> str | None:
    """The 32-hex id of the trace being recorded here, if any."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def parse_traceparent(value: str) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent``; ``None`` if invalid."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_hex, span_hex, flags_hex = parts[:4]
    if len(trace_hex) != 32 or len(span_hex) != 16 or len(flags_hex) != 2:
        return None
    if version == "00" and len(parts) != 4:
        return None
    try:
        trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    flags_value = _SAMPLED if flags & TraceFlags.SAMPLED else _NOT_SAMPLED
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags_value)


def _write_context(fields: MutableMapping[str, str], context: SpanContext) -> None:
    flags = "01" if context.trace_flags.sampled else "00"
    fields[TRACEPARENT] = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"
    if context.trace_state:
        fields[TRACESTATE] = context.trace_state.to_header()


def _as_unsampled(traceparent: str) -> str:
    parent = parse_traceparent(traceparent)
    if parent is None:
        return ""
    return f"00-{parent.trace_id:032x}-{parent.span_id:016x}-00"


def new_unsampled_traceparent() -> str:
    """The context of a new trace that is not recorded."""
    return f"00-{random.getrandbits(128):032x}-{random.getrandbits(64) or 1:016x}-00"


def sending(fields: MutableMapping[str, str], message_type: str, destination: str) -> None:
    """Stamp a message about to be sent with its trace context; when the trace
    is recorded, a producer span marks the send."""
    tracer = current
    if tracer is None:
        return
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.destination.name": destination,
        "streamcart.message.type": message_type,
    }
    # Outside a trace, the consumer starts it: no trace of one lone span per
    # system event or script-published message.
    span = tracer.start_outgoing(
        fields, f"send {message_type}", SpanKind.PRODUCER, attributes, may_start_trace=False
    )
    if span is not None:
        span.end()


def calling(fields: MutableMapping[str, str], target: str, correlation_id: str) -> Span | None:
    """The client span of an RPC request about to be sent (its context goes
    into ``fields``); end it with :func:`ending`."""
    tracer = current
    if tracer is None:
        return None
    service, _, method = target.partition(".")
    attributes = {
        "rpc.system": RPC_SYSTEM,
        "rpc.service": service,
        "rpc.method": method,
        "messaging.message.conversation_id": correlation_id,
    }
    return tracer.start_outgoing(fields, target, SpanKind.CLIENT, attributes, may_start_trace=True)


@contextlib.contextmanager
def ending(span: Span | None) -> Iterator[None]:
    """End ``span`` after the block; failed if the block raised."""
    if span is None:
        yield
        return
    try:
        yield
    except BaseException as exc:
        failed(span, exc)
        raise
    finally:
        span.end()


class TraceLogFilter(logging.Filter):
    """Gives each log record ``trace``: `` trace=<id>`` inside a recorded trace, else ""."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id = current_trace_id() if current is not None else None
        record.trace = f" trace={trace_id}" if trace_id else ""
        return True
