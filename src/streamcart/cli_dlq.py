"""``streamcart dlq``: inspect, replay or purge a service's dead letters."""

from __future__ import annotations

import json

import click
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from streamcart.bus import deadletter
from streamcart.bus.rawtext import printable, printable_fields
from streamcart.cli_config import CliState

console = Console()


@click.group("dlq")
def dlq_group() -> None:
    """Inspect, replay or purge a service's dead letters."""


@dlq_group.command("list")
@click.argument("service")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def dlq_list(state: CliState, service: str, limit: int, as_json: bool) -> None:
    """List SERVICE's dead letters, oldest first."""

    async def job(redis: Redis) -> tuple[int, list[deadletter.Entry]]:
        total = await deadletter.count_dead(redis, state.keys, service)
        return total, await deadletter.list_dead(redis, state.keys, service, count=limit)

    total, entries = state.run(job)
    if as_json:
        for entry_id, fields in entries:
            click.echo(json.dumps({"dlq_entry": entry_id, **printable_fields(fields)}))
        return
    table = Table(title=f"{state.keys.dlq(service)}: {total} dead letters")
    for column in ("entry", "type", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for entry_id, fields in entries:
        table.add_row(
            entry_id,
            printable(fields.get("type", "-")),
            fields.get("dlq_attempts", ""),
            printable(fields.get("dlq_error", "")),
        )
    console.print(table)


@dlq_group.command("show")
@click.argument("service")
@click.argument("entry_id")
@click.pass_obj
def dlq_show(state: CliState, service: str, entry_id: str) -> None:
    """Print one dead letter of SERVICE with all its fields; bytes that are not
    UTF-8 are written as \\xNN."""
    entries = state.run(lambda r: r.xrange(state.keys.dlq(service), entry_id, entry_id))
    if not entries:
        raise click.ClickException(f"no dead letter {entry_id} in {state.keys.dlq(service)}")
    click.echo(json.dumps(printable_fields(entries[0][1]), indent=2, ensure_ascii=False))


@dlq_group.command("replay")
@click.argument("service")
@click.argument("entry_ids", nargs=-1)
@click.pass_obj
def dlq_replay(state: CliState, service: str, entry_ids: tuple[str, ...]) -> None:
    """Send SERVICE's dead letters (all, or ENTRY_IDS) back to its inbox."""
    count = state.run(lambda r: deadletter.replay(r, state.keys, service, list(entry_ids) or None))
    click.echo(f"replayed {count} to {state.keys.inbox(service)}")


@dlq_group.command("purge")
@click.argument("service")
@click.argument("entry_ids", nargs=-1)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def dlq_purge(state: CliState, service: str, entry_ids: tuple[str, ...], yes: bool) -> None:
    """Delete SERVICE's dead letters (all, or ENTRY_IDS) for good."""
    what = f"{len(entry_ids)} dead letters" if entry_ids else "every dead letter"
    if not yes and not click.confirm(f"Delete {what} of {service}?", default=False):
        raise click.Abort
    count = state.run(lambda r: deadletter.purge(r, state.keys, service, list(entry_ids) or None))
    click.echo(f"purged {count}")
