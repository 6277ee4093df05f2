"""Finished spans as stored in the namespace's trace stream.

One stream entry per span, with two fields: ``trace_id`` (so a reader can skip
other traces without decoding) and ``span``, the :class:`SpanRecord` as JSON.
The entry id's time is when the span was exported, never before it started.
"""

from __future__ import annotations

from typing import Any

import msgspec

TRACE_ID, SPAN = "trace_id", "span"
# Span kinds and statuses as stored (lower case, as OpenTelemetry names them).
KINDS = ("internal", "server", "client", "producer", "consumer")
OK, ERROR, UNSET = "ok", "error", "unset"


class SpanEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened during a span: a retry, a dead letter, an exception."""

    name: str
    at_ns: int
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


class SpanRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One finished span. Ids are lower-case hex: 32 digits for the trace,
    16 for spans; ``parent_id`` is empty for a root span."""

    trace_id: str
    span_id: str
    parent_id: str = ""
    name: str
    service: str
    kind: str = "internal"
    start_ns: int
    end_ns: int
    status: str = UNSET
    status_message: str = ""
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    events: list[SpanEvent] = msgspec.field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


_decoder = msgspec.json.Decoder(SpanRecord)
_encoder = msgspec.json.Encoder()


def to_fields(span: SpanRecord) -> dict[str, str]:
    """The stream entry of ``span``."""
    return {TRACE_ID: span.trace_id, SPAN: _encoder.encode(span).decode()}


def from_fields(fields: dict[str, str]) -> SpanRecord | None:
    """The span of a stream entry; ``None`` for an entry that is not one."""
    try:
        return _decoder.decode(fields[SPAN])
    except (KeyError, msgspec.DecodeError):
        return None
