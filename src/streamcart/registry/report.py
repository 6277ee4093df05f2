"""Rendering a status snapshot: a rich table for people, plain data for scripts."""

from __future__ import annotations

from typing import Any

import msgspec
from rich import box
from rich.table import Table
from rich.text import Text

from streamcart.registry.status import Snapshot


def as_data(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data, with per-service totals filled in and the
    durability mode explained."""
    data: dict[str, Any] = msgspec.to_builtins(snapshot)
    data["durability"]["meaning"] = snapshot.durability.meaning
    for service, state in zip(data["services"], snapshot.services, strict=True):
        service["lag"] = state.lag
        service["pending"] = state.pending
        service["oldest_pending_age_ms"] = state.oldest_pending_age_ms
    return data


def _age(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1_000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.0f} min"


def table(snapshot: Snapshot) -> Table:
    """One row per service, narrow enough for an 80-column terminal."""
    grid = Table(
        title="streamcart status",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    grid.add_column("service", no_wrap=True)
    # "to DLQ" counts what was ever dead-lettered; "in DLQ" is what is there now.
    for column in ("up", "handled", "failed", "to DLQ", "msg/s", "lag", "pending",
                   "oldest", "in DLQ"):  # fmt: skip
        grid.add_column(column, justify="right", no_wrap=True)
    for state in snapshot.services:
        alive = f"[green]{state.alive}[/]" if state.alive else "[red]0[/]"
        if state.dead:
            alive += f" [red]+{state.dead} dead[/]"
        grid.add_row(
            state.service,
            alive,
            f"{state.handled:,}",
            f"{state.failed:,}",
            f"{state.dead_lettered:,}",
            f"{state.rate:,.1f}",
            f"{state.lag:,}",
            f"{state.pending:,}",
            _age(state.oldest_pending_age_ms),
            f"[yellow]{state.dlq:,}[/]" if state.dlq else "0",
        )
    waiting = [
        f"{state.service} {instance.consumer} waits: {instance.waiting}"
        for state in snapshot.services
        for instance in state.instances
        if instance.waiting
    ]
    if waiting:
        grid.caption = "[yellow]" + "\n".join(waiting) + "[/]"
    if not snapshot.services:
        grid.caption = "no service has registered yet: start one with `streamcart worker`"
    return grid


def breaker_table(snapshot: Snapshot) -> Table | None:
    """One row per reported circuit breaker, or None when none reported."""
    if not snapshot.breakers:
        return None
    grid = Table(title="circuit breakers", title_justify="left", box=box.SIMPLE_HEAD,
                 pad_edge=False, collapse_padding=True)  # fmt: skip
    for column in ("target", "state", "calls", "failures", "retry in", "reported by"):
        grid.add_column(column, no_wrap=True)
    colours = {"closed": "green", "half_open": "yellow", "open": "red"}
    for report in snapshot.breakers:
        state = report.breaker
        retry = f"{state.retry_after_s:.1f} s" if state.retry_after_s else "-"
        grid.add_row(state.target, f"[{colours[state.state]}]{state.state}[/]", str(state.calls),
                     str(state.failures), retry, report.owner)  # fmt: skip
    return grid


def durability_line(snapshot: Snapshot) -> Text:
    """The server's durability mode and what it means for acknowledged writes."""
    durability = snapshot.durability
    style = "green" if durability.mode == "always" else "yellow"
    line = Text("durability: ")
    line.append(durability.mode, style=style)
    line.append(f" ({durability.meaning})")
    return line
