"""``streamcart trace``: list recent traces and show one as a call tree."""

from __future__ import annotations

import json
import re

import click
from redis.asyncio import Redis
from rich.console import Console

from streamcart.cli_config import CliState
from streamcart.errors import InvalidError
from streamcart.telemetry import trace_view
from streamcart.telemetry.spans import SpanRecord
from streamcart.telemetry.traces import (
    TraceSummary,
    load_trace,
    normalise_trace_id,
    recent_traces,
)

_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+)\s*([smhd])")


def _duration_ms(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``30s``, ``10m``, ``2h`` or ``1d`` as milliseconds."""
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration: use e.g. 30s, 10m, 2h or 1d")
    return int(match[1]) * _UNITS_MS[match[2]]


@click.group("trace")
def trace_group() -> None:
    """Look at the spans services stored: recent traces, or one as a call tree."""


@trace_group.command("list")
@click.option("--service", metavar="NAME", help="Only traces with a span of service NAME.")
@click.option("--errors", is_flag=True, help="Only traces with a failed span.")
@click.option("--since", callback=_duration_ms, metavar="DURATION",
              help="Only traces that started this recently: 30s, 10m, 2h, 1d.")  # fmt: skip
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1),
              help="Traces to show at most.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of trace summaries.")
@click.pass_obj
def trace_list(
    state: CliState,
    service: str | None,
    errors: bool,
    since: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """List recent traces, newest first: root span, spans, duration, status.

    At most the newest 20,000 stored spans are read: on a busy stream an older
    trace may show only some of its spans, or not at all (the stream is capped
    anyway). `streamcart trace show` prints one trace in full.
    """

    async def job(redis: Redis) -> list[TraceSummary]:
        since_ms = None
        if since is not None:
            # The server's clock: the one the stream's entry ids come from.
            seconds, micros = await redis.time()
            since_ms = int(seconds) * 1000 + int(micros) // 1000 - since
        return await recent_traces(
            redis, state.keys, service=service, errors_only=errors, since_ms=since_ms, limit=limit
        )

    traces = state.run(job)
    if as_json:
        click.echo(json.dumps(trace_view.summaries_data(traces)))
        return
    if not traces:
        click.echo(f"no traces found in {state.keys.traces()}")
        return
    Console().print(trace_view.summary_table(traces, title=f"{state.keys.traces()}: newest first"))


@trace_group.command("show")
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary and every span (with all attributes) as JSON.")  # fmt: skip
@click.pass_obj
def trace_show(state: CliState, trace_id: str, as_json: bool) -> None:
    """Show trace TRACE_ID (32 hex digits) as a call tree with a timeline.

    Each span shows its service, name, kind, duration and status, with its
    events (retries, dead letters, exceptions) beneath it. Exits with 1 when
    no span of the trace is stored.
    """
    try:
        trace_id = normalise_trace_id(trace_id)
    except InvalidError as exc:
        raise click.BadParameter(str(exc), param_hint="TRACE_ID") from exc

    spans: list[SpanRecord] = state.run(lambda r: load_trace(r, state.keys, trace_id))
    if not spans:
        raise click.ClickException(
            f"no trace {trace_id} in {state.keys.traces()} (never stored, or trimmed since)"
        )
    if as_json:
        click.echo(json.dumps(trace_view.trace_data(spans), indent=2))
        return
    Console().print(trace_view.trace_tree(spans))
