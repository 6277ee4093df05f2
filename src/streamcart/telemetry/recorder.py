"""Recording spans cheaply, and handing them to exporters off the event loop.

The SDK's span costs some 20 us to start and end, more than a whole message
costs the consumer. :class:`RecordedSpan` implements the OpenTelemetry span
API with plain fields (the same context propagation, user code may set
attributes and events on it and start SDK spans under it), and
:class:`SpanBuffer` batches finished spans to a background thread, which
turns them into :class:`SpanRecord` for the sinks. Spans that user code
starts with the SDK join the same buffer (:class:`BufferingProcessor`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util import types

from streamcart.telemetry.spans import ERROR, OK, UNSET, SpanEvent, SpanRecord

log = logging.getLogger("streamcart.tracing")
_STATUS = {StatusCode.OK: OK, StatusCode.ERROR: ERROR, StatusCode.UNSET: UNSET}


class SpanSink(Protocol):
    """Where batches of finished spans go (the trace stream, an SDK exporter...)."""

    def export(self, spans: Sequence[SpanRecord]) -> None: ...

    def shutdown(self) -> None: ...


class RecordedSpan(trace.Span):
    """A span as plain fields; :meth:`end` hands it to its buffer."""

    __slots__ = (
        "_buffer",
        "attributes",
        "context",
        "end_ns",
        "events",
        "kind",
        "name",
        "parent",
        "service",
        "start_ns",
        "status",
        "status_message",
    )

    def __init__(
        self,
        buffer: SpanBuffer,
        service: str,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
    ) -> None:
        self._buffer = buffer
        self.service = service
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.attributes = attributes
        self.events: list[SpanEvent] = []
        self.status = UNSET
        self.status_message = ""
        self.start_ns = time.time_ns()
        self.end_ns = 0

    def end(self, end_time: int | None = None) -> None:
        if self.end_ns:
            return
        self.end_ns = end_time or time.time_ns()
        self._buffer.put(self)

    def get_span_context(self) -> SpanContext:
        return self.context

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if not self.end_ns:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if not self.end_ns:
            self.attributes[key] = value

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if not self.end_ns:
            at = timestamp or time.time_ns()
            self.events.append(SpanEvent(name=name, at_ns=at, attributes=dict(attributes or {})))

    def update_name(self, name: str) -> None:
        self.name = name

    def is_recording(self) -> bool:
        return not self.end_ns

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        code = status.status_code if isinstance(status, Status) else status
        if isinstance(status, Status):
            description = status.description
        if self.status == OK and code != StatusCode.OK:
            return  # as the SDK: OK is final
        self.status = _STATUS[code]
        self.status_message = (description or "") if code == StatusCode.ERROR else ""

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        trace_text = "".join(traceback.format_exception(exception))
        details: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": trace_text[-4_000:],  # the innermost frames
        }
        details.update(attributes or {})
        self.add_event("exception", details, timestamp)

    def record(self) -> SpanRecord:
        parent = self.parent
        return SpanRecord(
            trace_id=f"{self.context.trace_id:032x}",
            span_id=f"{self.context.span_id:016x}",
            parent_id=f"{parent.span_id:016x}" if parent is not None else "",
            name=self.name,
            service=self.service,
            kind=self.kind.name.lower(),
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            status=self.status,
            status_message=self.status_message,
            attributes=self.attributes,
            events=self.events,
        )


def record_of(span: ReadableSpan) -> SpanRecord:
    """The stored form of a finished SDK span (one that user code started)."""
    context = span.get_span_context()
    trace_id, span_id = (context.trace_id, context.span_id) if context else (0, 0)
    return SpanRecord(
        trace_id=f"{trace_id:032x}",
        span_id=f"{span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else "",
        name=span.name,
        service=str(span.resource.attributes.get("service.name", "")),
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


class SpanBuffer:
    """Finished spans on their way to the sinks, from a thread of its own.

    :meth:`put` never waits: beyond ``max_queue`` spans it drops the span and
    counts it, so a slow or unreachable sink costs spans, never handler time.
    """

    def __init__(
        self,
        sinks: Sequence[SpanSink],
        *,
        max_queue: int = 8_192,
        batch: int = 512,
        delay_ms: int = 1_000,
    ) -> None:
        self.sinks = list(sinks)
        self.max_queue = max_queue
        self.batch = batch
        self.delay_s = delay_ms / 1000
        self.dropped = 0
        self._queue: collections.deque[RecordedSpan | ReadableSpan] = collections.deque()
        self._wake = threading.Event()
        self._flushed = threading.Condition()
        self._flush_requests = 0
        self._flushes = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="streamcart-spans", daemon=True)
        self._thread.start()

    def put(self, span: RecordedSpan | ReadableSpan) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            return
        self._queue.append(span)
        if len(self._queue) >= self.batch:
            self._wake.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Export every span put so far; ``False`` if that took over ``timeout_s``."""
        with self._flushed:
            self._flush_requests += 1
            wanted = self._flush_requests
            self._wake.set()
            return self._flushed.wait_for(lambda: self._flushes >= wanted, timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Export what is left, stop the thread and the sinks."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        for sink in self.sinks:
            try:
                sink.shutdown()
            except Exception:
                log.exception("span sink %r failed to shut down", sink)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.delay_s)
            self._wake.clear()
            with self._flushed:
                requests = self._flush_requests
            self._export_all()
            with self._flushed:
                self._flushes = requests
                self._flushed.notify_all()
            if self._stopping:
                self._export_all()
                return

    def _export_all(self) -> None:
        queue = self._queue
        while queue:
            spans: list[SpanRecord] = []
            while queue and len(spans) < self.batch:
                span = queue.popleft()
                spans.append(span.record() if isinstance(span, RecordedSpan) else record_of(span))
            for sink in self.sinks:
                try:
                    sink.export(spans)
                except Exception:
                    log.exception("span sink %r failed; %d spans lost", sink, len(spans))


class BufferingProcessor(SpanProcessor):
    """Puts spans that user code starts with the SDK into the same buffer."""

    def __init__(self, buffer: SpanBuffer) -> None:
        self.buffer = buffer

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.buffer.put(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.buffer.flush(timeout_millis / 1000)
