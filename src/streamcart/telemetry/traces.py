"""Reading traces back from the trace stream (``telemetry.spans``).

The stream holds one entry per finished span, in export order, so a trace's
spans are scattered among other traces' entries. Readers scan it newest-first
in chunks and rely on its one ordering guarantee: a span is exported after it
starts, so once the scan is at entries older than a trace's start, nothing
further back can belong to that trace.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing

import msgspec
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.errors import InvalidError
from streamcart.telemetry.spans import ERROR, TRACE_ID, SpanRecord, from_fields

CHUNK = 1_000
MAX_SCAN = 20_000  # entries a listing reads at most: bounded work on a busy stream
# Span times come from each host's clock, entry ids from Redis's: scans read
# this far past where the clocks say they could stop.
CLOCK_SKEW_MS = 5_000
_NS_PER_MS = 1_000_000
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_MAX_SEQ = 2**64 - 1

Entry = tuple[str, dict[str, str]]


class TraceSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One trace in a listing, from the spans the scan saw of it.

    ``status`` is the root span's; ``error`` is true when any span failed.
    """

    trace_id: str
    root_name: str
    root_service: str
    services: list[str]
    start_ns: int
    duration_ns: int
    span_count: int
    error: bool
    status: str


def normalise_trace_id(trace_id: str) -> str:
    """``trace_id`` in stored form (32 lower-case hex digits), else :class:`InvalidError`."""
    normal = trace_id.strip().lower()
    if not _TRACE_ID.fullmatch(normal):
        raise InvalidError(f"a trace id is 32 hex digits, got {trace_id!r}")
    return normal


def root_of(spans: Iterable[SpanRecord]) -> SpanRecord | None:
    """The earliest span without a parent, else the earliest span (the root was not stored)."""
    ordered = sorted(spans, key=lambda span: (span.start_ns, span.span_id))
    return next((span for span in ordered if not span.parent_id), ordered[0] if ordered else None)


def summarise(spans: list[SpanRecord]) -> TraceSummary:
    """The summary of one trace's spans (at least one)."""
    root = root_of(spans)
    if root is None:
        raise ValueError("a trace summary needs at least one span")
    start = min(span.start_ns for span in spans)
    return TraceSummary(
        trace_id=root.trace_id,
        root_name=root.name,
        root_service=root.service,
        services=sorted({span.service for span in spans}),
        start_ns=start,
        duration_ns=max(0, max(span.end_ns for span in spans) - start),
        span_count=len(spans),
        error=any(span.status == ERROR for span in spans),
        status=root.status,
    )


async def recent_traces(
    redis: Redis,
    keys: Keys,
    *,
    service: str | None = None,
    errors_only: bool = False,
    since_ms: int | None = None,
    limit: int = 20,
    max_scan: int = MAX_SCAN,
    chunk: int = CHUNK,
    clock_skew_ms: int = CLOCK_SKEW_MS,
) -> list[TraceSummary]:
    """The newest ``limit`` traces (by start), newest first.

    ``service`` keeps traces with a span of that service, ``errors_only`` those
    with a failed span, ``since_ms`` (Unix ms) those that started since then.
    The scan stops once the newest ``limit`` matching traces are settled, or
    after ``max_scan`` entries: on a stream busier than that, the oldest
    traces listed may be missing spans.
    """
    traces: dict[str, _Trace] = {}
    seen = 0
    since_ns = since_ms * _NS_PER_MS if since_ms is not None else None
    lowest = f"{since_ms}-0" if since_ms is not None else "-"

    def matches(trace: _Trace) -> bool:
        if since_ns is not None and trace.start_ns < since_ns:
            return False
        if errors_only and not trace.error:
            return False
        return service is None or service in trace.services

    async with aclosing(_newest_first(redis, keys.traces(), lowest, chunk)) as chunks:
        async for entries in chunks:
            for _, fields in entries[: max_scan - seen]:
                span = from_fields(fields)
                if span is not None:
                    traces.setdefault(span.trace_id, _Trace()).add(span)
            seen += len(entries)
            if seen >= max_scan:
                break
            # A trace not settled yet has its root still unread or started no
            # later than the oldest entry read: older than every settled one.
            # So with ``limit`` settled matches the newest are known.
            oldest_ms = _ms_of(entries[-1][0])
            settled = [
                t for t in traces.values() if t.settled(oldest_ms + clock_skew_ms) and matches(t)
            ]
            if len(settled) >= limit:
                break

    found = sorted(
        (summarise(trace.spans) for trace in traces.values() if matches(trace)),
        key=lambda summary: (summary.start_ns, summary.trace_id),
        reverse=True,
    )
    return found[:limit]


async def load_trace(
    redis: Redis,
    keys: Keys,
    trace_id: str,
    *,
    chunk: int = CHUNK,
    clock_skew_ms: int = CLOCK_SKEW_MS,
) -> list[SpanRecord]:
    """Every stored span of one trace, by start time; empty when none is stored.

    Once the root span is found, the scan ends at entries older than its start
    (less ``clock_skew_ms``); without a root it goes back to the beginning of
    the stream.
    """
    trace_id = normalise_trace_id(trace_id)
    spans: dict[str, SpanRecord] = {}
    root_ms: int | None = None
    async with aclosing(_newest_first(redis, keys.traces(), "-", chunk)) as chunks:
        async for entries in chunks:
            for entry_id, fields in entries:
                if root_ms is not None and _ms_of(entry_id) < root_ms - clock_skew_ms:
                    return _by_start(spans.values())
                if fields.get(TRACE_ID) != trace_id:
                    continue  # another trace's: not worth decoding
                span = from_fields(fields)
                if span is None or span.trace_id != trace_id:
                    continue
                spans.setdefault(span.span_id, span)  # an export retried twice
                if not span.parent_id:
                    start_ms = span.start_ns // _NS_PER_MS
                    root_ms = start_ms if root_ms is None else min(root_ms, start_ms)
    return _by_start(spans.values())


class _Trace:
    """What a listing collects of one trace while it scans."""

    __slots__ = ("error", "has_root", "services", "span_ids", "spans", "start_ns")

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []
        self.span_ids: set[str] = set()
        self.services: set[str] = set()
        self.start_ns = 2**63
        self.has_root = False
        self.error = False

    def add(self, span: SpanRecord) -> None:
        if span.span_id in self.span_ids:
            return  # an export retried twice
        self.span_ids.add(span.span_id)
        self.spans.append(span)
        self.services.add(span.service)
        self.start_ns = min(self.start_ns, span.start_ns)
        self.has_root = self.has_root or not span.parent_id
        self.error = self.error or span.status == ERROR

    def settled(self, oldest_read_ms: int) -> bool:
        """True when no unread entry (all at most ``oldest_read_ms`` old) can belong here."""
        return self.has_root and self.start_ns // _NS_PER_MS > oldest_read_ms


async def _newest_first(
    redis: Redis, stream: str, lowest: str, chunk: int
) -> AsyncGenerator[list[Entry], None]:
    """The entries of ``stream`` down to id ``lowest``, newest first, ``chunk`` at a time."""
    highest = "+"
    while True:
        entries: list[Entry] = await redis.xrevrange(stream, max=highest, min=lowest, count=chunk)
        if entries:
            yield entries
        if len(entries) < chunk:
            return
        before = _before(entries[-1][0])
        if before is None:
            return
        highest = before


def _ms_of(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _before(entry_id: str) -> str | None:
    """The id just before ``entry_id`` (an inclusive bound, which every Redis version takes)."""
    ms, _, seq = entry_id.partition("-")
    if int(seq) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-{_MAX_SEQ}" if int(ms) > 0 else None


def _by_start(spans: Iterable[SpanRecord]) -> list[SpanRecord]:
    return sorted(spans, key=lambda span: (span.start_ns, span.span_id))
