"""Showing traces: a rich table and call tree for people, plain data for scripts."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import msgspec
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from streamcart.telemetry.spans import ERROR, OK, SpanEvent, SpanRecord
from streamcart.telemetry.traces import TraceSummary, summarise

BAR_WIDTH = 30
_INDENT = 4  # the columns rich's Tree indents each level by
_MAX_LEFT = 60  # a longer label is not padded: its bar is just out of line
_MAX_VALUE = 120  # an event attribute value (a stack trace...) is cut here; --json has it all
_STATUS_STYLE = {OK: "green", ERROR: "bold red"}


def format_duration(ns: int) -> str:
    """Milliseconds with about three significant digits: 0.042 ms, 1.25 ms, 12.5 ms, 125 ms."""
    ms = ns / 1_000_000
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def local_time(ns: int) -> str:
    """A Unix time in ns as local wall-clock time, to the millisecond."""
    at = datetime.datetime.fromtimestamp(ns / 1e9).astimezone()
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def summary_table(traces: Sequence[TraceSummary], *, title: str | None = None) -> Table:
    """One row per trace, in the order given."""
    table = Table(title=title)
    # The id is what a reader copies into `trace show`: never wrapped.
    table.add_column("trace id", no_wrap=True, min_width=32)
    for column in ("when", "root service", "root name"):
        table.add_column(column, overflow="fold")
    table.add_column("spans", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("status")
    for trace in traces:
        # Text cells: a span name such as "GET /items/[id]" is not rich markup.
        table.add_row(
            Text(trace.trace_id),
            Text(local_time(trace.start_ns)),
            Text(trace.root_service),
            Text(trace.root_name),
            Text(str(trace.span_count)),
            Text(format_duration(trace.duration_ns)),
            _summary_status(trace),
        )
    return table


def trace_tree(spans: Sequence[SpanRecord]) -> Tree:
    """The call tree of one trace's spans, with a timeline bar on each span.

    Children are ordered by start time, a span's events are lines under it,
    and a span whose parent is not stored hangs off the top, marked orphan.
    """
    if not spans:
        return Tree(Text("no spans"))
    summary = summarise(list(spans))
    tree = Tree(
        Text.assemble(
            ("trace ", "bold"),
            (summary.trace_id, "bold"),
            f"  {summary.span_count} spans  {format_duration(summary.duration_ns)}  ",
            (", ".join(summary.services), "cyan"),
        )
    )
    rows = _layout(spans)
    left_width = min(_MAX_LEFT, max(_INDENT * depth + _left(s).cell_len for s, depth, _ in rows))
    nodes: list[Tree] = [tree]  # nodes[d] is the latest node at depth d
    for span, depth, orphan in rows:
        del nodes[depth:]
        node = nodes[-1].add(_span_label(span, depth, orphan, left_width, summary))
        for event in sorted(span.events, key=lambda event: event.at_ns):
            node.add(_event_label(span, event))
        nodes.append(node)
    return tree


def summaries_data(traces: Sequence[TraceSummary]) -> list[dict[str, Any]]:
    """Summaries as JSON-ready data."""
    data: list[dict[str, Any]] = msgspec.to_builtins(list(traces))
    return data


def trace_data(spans: Sequence[SpanRecord]) -> dict[str, Any]:
    """One trace as JSON-ready data: its summary, its spans by start time, its orphans."""
    ordered = sorted(spans, key=lambda span: (span.start_ns, span.span_id))
    return {
        "summary": msgspec.to_builtins(summarise(ordered)) if ordered else None,
        "spans": msgspec.to_builtins(ordered),
        "orphans": [span.span_id for span, _, orphan in _layout(ordered) if orphan],
    }


def _layout(spans: Sequence[SpanRecord]) -> list[tuple[SpanRecord, int, bool]]:
    """The spans in display order with their depth (top level is 1) and whether
    each is an orphan: a top-level span that has a parent, one not stored (or,
    in a corrupt trace, a parent loop that no root leads into)."""
    by_id: dict[str, SpanRecord] = {}
    for span in sorted(spans, key=lambda span: (span.start_ns, span.span_id)):
        by_id.setdefault(span.span_id, span)
    children: dict[str, list[SpanRecord]] = {}
    tops: list[SpanRecord] = []
    for span in by_id.values():
        if span.parent_id in by_id and span.parent_id != span.span_id:
            children.setdefault(span.parent_id, []).append(span)
        else:
            tops.append(span)
    rows: list[tuple[SpanRecord, int, bool]] = []
    placed: set[str] = set()
    # Spans left unplaced once the tops are done are in a parent loop: each
    # comes out at the top level in its turn.
    for top in [*tops, *by_id.values()]:
        # Depth first without recursion: a deep trace must not hit the recursion limit.
        stack = [(top, 1)]
        while stack:
            span, depth = stack.pop()
            if span.span_id in placed:
                continue
            placed.add(span.span_id)
            rows.append((span, depth, depth == 1 and bool(span.parent_id)))
            stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    return rows


def _left(span: SpanRecord) -> Text:
    return Text.assemble((span.service, "cyan"), " ", (span.name, "bold"), (f" {span.kind}", "dim"))


def _span_label(
    span: SpanRecord, depth: int, orphan: bool, left_width: int, trace: TraceSummary
) -> Text:
    label = _left(span)
    label.append(" " * max(1, left_width - _INDENT * depth - label.cell_len + 1))
    label.append_text(_bar(span, trace))
    label.append(f" {format_duration(span.duration_ns):>10} ")
    label.append_text(_span_status(span))
    if orphan:
        label.append(f"  orphan: parent {span.parent_id} not found", "yellow")
    return label


def _bar(span: SpanRecord, trace: TraceSummary) -> Text:
    """``span``'s place on the trace's timeline: where it starts, how long it lasts."""
    total = max(1, trace.duration_ns)
    offset = min(BAR_WIDTH - 1, max(0, (span.start_ns - trace.start_ns) * BAR_WIDTH // total))
    width = min(BAR_WIDTH - offset, max(1, round(span.duration_ns * BAR_WIDTH / total)))
    style = "red" if span.status == ERROR else "green"
    return Text.assemble(
        ("|", "dim"),
        ("·" * offset, "dim"),
        ("█" * width, style),
        ("·" * (BAR_WIDTH - offset - width), "dim"),
        ("|", "dim"),
    )


def _span_status(span: SpanRecord) -> Text:
    if span.status == ERROR and span.status_message:
        return Text(f"{ERROR}: {span.status_message}", _STATUS_STYLE[ERROR])
    return Text(span.status, _STATUS_STYLE.get(span.status, "dim"))


def _summary_status(trace: TraceSummary) -> Text:
    if trace.error:
        return Text(ERROR, _STATUS_STYLE[ERROR])
    return Text(trace.status, _STATUS_STYLE.get(trace.status, "dim"))


def _event_label(span: SpanRecord, event: SpanEvent) -> Text:
    label = Text.assemble(
        ("event ", "dim"),
        (event.name, "red" if event.name == "exception" else "yellow"),
        f" +{format_duration(event.at_ns - span.start_ns)}",
    )
    for key, value in event.attributes.items():
        label.append(f" {key}=", "dim")
        label.append(_short(value))
    return label


def _short(value: Any) -> str:
    """An attribute value on one line, cut when long."""
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    first, newline, _ = text.partition("\n")
    if newline or len(first) > _MAX_VALUE:
        return first[:_MAX_VALUE] + "…"
    return first
