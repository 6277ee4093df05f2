"""``streamcart config``: read and change the config store; running workers
apply a change within a second.

Without SERVICE a command acts on the global scope (``ServiceOptions`` keys
for every service); with it, on that service's scope, whose keys are its
``ServiceOptions`` and the fields of its declared settings. A value is
checked against the key's type before anything is written: an unknown
service, an unknown key or a refused value is a usage error (exit code 2).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import click
import msgspec
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from streamcart.bus.keys import Keys
from streamcart.bus.loader import load_service
from streamcart.bus.service import Service
from streamcart.config.resolve import Setting, check_key, describe, validate
from streamcart.config.store import GLOBAL, ConfigChange, ConfigStore, encode_value
from streamcart.errors import ConfigurationError, InvalidConfigError
from streamcart.registry.health import MONITOR_SCOPE, monitor_scope

T = TypeVar("T")
console = Console()


class CliState(Protocol):
    """What the ``streamcart`` group hands its commands (``cli.State``)."""

    keys: Keys

    def run(self, job: Callable[[Redis], Awaitable[T]]) -> T: ...


@click.group("config")
def config_group() -> None:
    """Read and change config, globally or per service; workers apply it live."""


@config_group.command("get")
@click.argument("args", nargs=-1, required=True, metavar="[SERVICE] KEY")
@click.option("--json", "as_json", is_flag=True, help="Print key, value and source as JSON.")
@click.pass_obj
def config_get(state: CliState, args: tuple[str, ...], as_json: bool) -> None:
    """Print the value KEY has for SERVICE (or globally), and where it comes from."""
    service, (key,) = _target(args, "KEY")
    _usage(lambda: check_key(service, key))
    _, rows = state.run(lambda r: _current(r, state.keys, service))
    row = next(row for row in rows if row.key == key)
    if as_json:
        click.echo(_json({"scope": _scope(service), **msgspec.structs.asdict(row)}))
    else:
        click.echo(encode_value(row.value))


@config_group.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, required=True, metavar="[SERVICE] KEY VALUE")
@click.pass_obj
def config_set(state: CliState, args: tuple[str, ...]) -> None:
    """Set KEY to VALUE for SERVICE (or globally).

    VALUE is read as JSON when it parses (3, true, "a b", [1, 2]), else as text.
    """
    service, (key, raw) = _target(args, "KEY", "VALUE")
    value = _usage(lambda: validate(service, key, raw))
    scope = _scope(service)
    version = state.run(lambda r: ConfigStore(r, state.keys).set(scope, key, value))
    click.echo(f"{scope} {key} = {encode_value(value)} (config version {version})")


@config_group.command("unset")
@click.argument("args", nargs=-1, required=True, metavar="[SERVICE] KEY")
@click.pass_obj
def config_unset(state: CliState, args: tuple[str, ...]) -> None:
    """Remove KEY from SERVICE's scope (or the global one): the next layer applies.

    A key no longer declared can be removed too, when it is stored.
    """
    service, (key,) = _target(args, "KEY")
    scope = _scope(service)

    async def job(redis: Redis) -> int:
        store = ConfigStore(redis, state.keys)
        try:
            check_key(service, key)
        except InvalidConfigError as exc:
            if key not in await store.list(scope):
                raise click.UsageError(str(exc)) from exc
        return await store.unset(scope, key)

    version = state.run(job)
    click.echo(f"{scope} {key} unset (config version {version})")


@config_group.command("list")
@click.argument("service_spec", metavar="[SERVICE]", required=False)
@click.option("--json", "as_json", is_flag=True, help="A JSON array of key, value, source.")
@click.pass_obj
def config_list(state: CliState, service_spec: str | None, as_json: bool) -> None:
    """Every key of SERVICE (or the global scope) with its effective value and
    its source: default, global or service."""
    service = _service(service_spec) if service_spec else None
    version, rows = state.run(lambda r: _current(r, state.keys, service))
    if as_json:
        click.echo(_json([msgspec.structs.asdict(row) for row in rows]))
        return
    table = Table(title=f"config of {_scope(service)} (version {version})")
    for column in ("key", "value", "source"):
        table.add_column(column, overflow="fold")
    for row in rows:
        style = "" if row.source == "default" else "bold"
        table.add_row(row.key, encode_value(row.value), row.source, style=style)
    console.print(table)


@config_group.command("history")
@click.argument("service_spec", metavar="[SERVICE]", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def config_history(state: CliState, service_spec: str | None, limit: int, as_json: bool) -> None:
    """The latest changes, newest first: of SERVICE's scope, or of every scope."""
    scope = _service(service_spec).name if service_spec else None
    changes = state.run(lambda r: ConfigStore(r, state.keys).history(scope, limit))
    if as_json:
        for change in changes:
            click.echo(_json(msgspec.structs.asdict(change)))
        return
    table = Table(title=f"config history of {scope or 'every scope'}")
    for column in ("version", "at (UTC)", "scope", "key", "old", "new"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(
            str(change.version),
            _when(change),
            change.scope,
            change.key,
            change.old or "-",
            change.new or "-",
        )
    console.print(table)


async def _current(redis: Redis, keys: Keys, service: Service | None) -> tuple[int, list[Setting]]:
    """The config version and every key's effective value; a stored value that
    is refused (written by hand) is reported on stderr and left out, as a
    worker would."""
    scope = _scope(service)
    snapshot = await ConfigStore(redis, keys).snapshot(*dict.fromkeys((GLOBAL, scope)))
    rows = describe(
        service,
        snapshot.scopes[GLOBAL],
        snapshot.scopes[scope] if service is not None else {},
        on_invalid=lambda error: click.echo(f"warning: ignored: {error}", err=True),
    )
    return snapshot.version, rows


def _target(args: tuple[str, ...], *names: str) -> tuple[Service | None, list[str]]:
    """Split ``[SERVICE] NAMES...``: without SERVICE, the global scope."""
    if len(args) == len(names):
        return None, list(args)
    if len(args) == len(names) + 1:
        return _service(args[0]), list(args[1:])
    raise click.UsageError(
        f"expected [SERVICE] {' '.join(names)}, got {len(args)} argument(s): {' '.join(args)}"
    )


def _service(spec: str) -> Service:
    if spec == MONITOR_SCOPE:
        return monitor_scope()
    if spec == "gateway":
        # Imported here: the gateway package pulls in the web stack, which
        # workers and the other commands do not need.
        from streamcart.gateway.settings import gateway_scope

        return gateway_scope()
    try:
        return load_service(spec)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="SERVICE") from exc


def _usage(check: Callable[[], T]) -> T:
    """Run a validation; what it refuses is a usage error (exit code 2)."""
    try:
        return check()
    except InvalidConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def _scope(service: Service | None) -> str:
    return service.name if service is not None else GLOBAL


def _when(change: ConfigChange) -> str:
    at = datetime.datetime.fromtimestamp(change.at_ms / 1000, tz=datetime.UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _json(data: Any) -> str:
    return json.dumps(msgspec.to_builtins(data))
