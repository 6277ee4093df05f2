"""The ``streamcart`` command: parse, build, delegate.

Redis URL: ``--redis-url``, else ``STREAMCART_REDIS_URL``, else ``REDIS_URL``,
else the embedded server (reused when running, started when not).
Exit codes: 0 ok, 1 failure, 2 usage error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import click
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console

from streamcart.app import configure_logging, demo_main, monitor_main, worker_main
from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.bus.loader import load_service
from streamcart.bus.pool import Pool
from streamcart.bus.publisher import Publisher
from streamcart.bus.rpc import RpcClient
from streamcart.cli_config import config_group
from streamcart.cli_deploy import deploy_group, deployment_option
from streamcart.cli_dlq import dlq_group
from streamcart.cli_params import checked_by
from streamcart.cli_trace import trace_group
from streamcart.cli_users import users_group
from streamcart.config import Settings
from streamcart.deployment import Deployment
from streamcart.errors import ConfigurationError, StreamcartError
from streamcart.registry import Discovery
from streamcart.telemetry.export import check_env as check_tracing_env
from streamcart.telemetry.serving import pool_metrics, process_metrics
from streamcart.workers.users import signing_keys
from streamcart.workers.users.accounts import SERVICE as USERS

T = TypeVar("T")
console = Console()


class State:
    """What the group's options resolved to, handed to every command."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)

    def redis_url(self) -> str:
        if self.settings.redis_url:
            return self.settings.redis_url
        from streamcart.bus.embedded import ensure_embedded

        return ensure_embedded()

    def run(self, job: Callable[[Redis], Awaitable[T]]) -> T:
        """Run ``job`` with a client, turning Redis failures into a clear exit 1."""

        async def main() -> T:
            redis = connect(self.redis_url())
            try:
                return await job(redis)
            finally:
                await redis.aclose()

        return _run(main())


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except (RedisError, OSError) as exc:
        raise click.ClickException(f"redis: {exc}") from exc
    except StreamcartError as exc:
        raise click.ClickException(str(exc)) from exc


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis-url", metavar="URL", help="Redis to use (default: env, else embedded).")
@click.option("--namespace", metavar="NS", help="Key namespace (default: sc).")
@click.option("-v", "--verbose", count=True, help="Debug log output.")
@click.version_option(package_name="streamcart")
@click.pass_context
def main(ctx: click.Context, redis_url: str | None, namespace: str | None, verbose: int) -> None:
    """streamcart: an e-commerce backend as Redis Streams worker pools."""
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    settings = Settings.from_env(redis_url=redis_url)
    if namespace:
        settings = Settings(redis_url=settings.redis_url, namespace=namespace)
    ctx.obj = State(settings)


def _check_tracing_env() -> None:
    try:
        check_tracing_env()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


def _check_signing_keys() -> None:
    """Refuse to start what signs or verifies tokens without its keys."""
    try:
        signing_keys.from_environment()
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


def _level() -> int:
    return logging.getLogger().getEffectiveLevel()


_service_spec = checked_by(load_service)


_metrics_port = click.option(
    "--metrics-port",
    metavar="PORT",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics of every worker process on this port (/metrics).",
)


@main.command()
@click.argument("service", callback=_service_spec)
@click.option(
    "--processes",
    "-p",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes; more than one runs a supervised pool.",
)
@click.option(
    "--concurrency",
    "-c",
    default=32,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Handlers running at once in each process.",
)
@_metrics_port
@pass_state
def worker(
    state: State, service: str, processes: int, concurrency: int, metrics_port: int | None
) -> None:
    """Run worker processes for SERVICE (a built-in name or module:attr)."""
    _check_tracing_env()
    if load_service(service).name == USERS:
        _check_signing_keys()
    url = state.redis_url()
    metrics = metrics_port is not None
    if processes == 1:
        try:
            with process_metrics(metrics_port):
                worker_main(
                    service, url, state.settings.namespace, concurrency, None, _level(), metrics
                )
        except (RedisError, OSError, StreamcartError) as exc:
            raise click.ClickException(str(exc)) from exc
        return
    try:
        with pool_metrics(metrics_port) as on_child_exit:
            Pool(
                {service: processes},
                url,
                namespace=state.settings.namespace,
                concurrency=concurrency,
                entry=worker_main,
                metrics=metrics,
                on_child_exit=on_child_exit,
            ).run()
    except StreamcartError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@deployment_option
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(1, 64),
    help="Worker processes of every service, instead of those of the deployment file.",
)
@_metrics_port
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port of the HTTP gateway (on 127.0.0.1); default: the deployment file's.",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also fill the shop (products, stock, a shopper, an admin); print a tour.",
)
@pass_state
def up(
    state: State,
    deployment: Deployment,
    processes: int | None,
    metrics_port: int | None,
    port: int | None,
    demo: bool,
) -> None:
    """Start the whole shop: Redis (embedded unless a URL is set), the services
    of the deployment file (with its processes and concurrency), the health
    monitor if it says so, and the HTTP gateway.

    Tokens are signed with STREAMCART_TOKEN_SECRET (or _FILE); with --demo and
    neither set, with a secret generated once and kept in Redis."""
    _check_tracing_env()
    from streamcart.demo import token_secret
    from streamcart.gateway import gateway_main

    url = state.redis_url()
    namespace = state.settings.namespace
    if demo:
        state.run(lambda redis: token_secret(redis, state.keys))
    _check_signing_keys()
    port = port or deployment.gateway.port
    services = deployment.services
    console.print(
        f"[bold]streamcart[/] up on {url}; services: {', '.join(services)}; "
        f"gateway http://127.0.0.1:{port} (API docs at /schema). Ctrl-C stops."
    )
    spawn = multiprocessing.get_context("spawn")
    helpers = [
        spawn.Process(
            target=gateway_main, args=(url, namespace, "127.0.0.1", port, _level()), name="gateway"
        ),
    ]
    if deployment.monitor:
        helpers.append(
            spawn.Process(target=monitor_main, args=(url, namespace, _level()), name="monitor")
        )
    if demo:
        helpers.append(spawn.Process(target=demo_main, args=(url, namespace, port), name="demo"))
    for helper in helpers:
        helper.start()
    try:
        with pool_metrics(metrics_port) as on_child_exit:
            Pool(
                {spec: processes or plan.processes for spec, plan in services.items()},
                url,
                namespace=state.settings.namespace,
                concurrency={spec: plan.concurrency for spec, plan in services.items()},
                entry=worker_main,
                metrics=metrics_port is not None,
                on_child_exit=on_child_exit,
            ).run()
    except StreamcartError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        _stop_helpers(helpers)


@main.command("demo")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True,
              help="The gateway of a shop started with `streamcart up --demo`.")  # fmt: skip
def demo_command(url: str) -> None:
    """Place orders through the gateway (one delivered, one declined, one cancelled)
    and print each one's timeline and trace id."""
    import httpx

    from streamcart.demo import tour

    try:
        asyncio.run(tour(url, log=console.print))
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"{exc}; is the shop running? Start it with `make run` (streamcart up --demo)"
        ) from exc


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@pass_state
def gateway(state: State, host: str, port: int) -> None:
    """Serve the HTTP API (OpenAPI at /schema) until Ctrl-C."""
    _check_tracing_env()
    _check_signing_keys()
    from streamcart.gateway import gateway_main

    try:
        gateway_main(state.redis_url(), state.settings.namespace, host, port, _level())
    except (RedisError, OSError, StreamcartError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("monitor")
@pass_state
def monitor_command(state: State) -> None:
    """Watch lag, pending entries, dead letters, error rates and dead instances;
    raise system.alert events (and POST them to the configured webhook).

    Thresholds live in the config store: `streamcart config list monitor`.
    """
    monitor_main(state.redis_url(), state.settings.namespace, _level())


@main.command()
@click.argument("spec", metavar="SERVICE", callback=_service_spec)
@click.option("--host", default=socket.gethostname, show_default="this machine's hostname",
              help="The host the instance must run on.")  # fmt: skip
@pass_state
def health(state: State, spec: str, host: str) -> None:
    """Exit 0 when an instance of SERVICE on HOST is alive (it heartbeated within
    its instance_ttl_ms) and working, else print why and exit 1; also 1 when
    Redis fails. An instance that waits (its acknowledgements refused, a
    read-only server...) is alive but not working.

    Kubernetes probes run it in the worker's own container, whose hostname
    is the one its instances register with.
    """
    service = load_service(spec)  # the callback checked it loads
    ttl_ms = service.options.instance_ttl_ms
    live = state.run(lambda r: Discovery(r, state.keys, ttl_ms=ttl_ms).instances(service.name))
    here = [instance for instance in live if instance.host == host]
    working = [instance for instance in here if not instance.waiting]
    if working:
        click.echo(f"{service.name}: {len(working)} live instance(s) on {host}")
        return
    if here:
        for instance in here:
            click.echo(f"{service.name} {instance.consumer} waits: {instance.waiting}", err=True)
        click.get_current_context().exit(1)
    elsewhere = sorted({instance.host for instance in live})
    where = f"live ones run on {', '.join(elsewhere)}" if elsewhere else "none anywhere"
    click.echo(
        f"{service.name}: no instance on {host} heartbeated in the last {ttl_ms} ms ({where})",
        err=True,
    )
    click.get_current_context().exit(1)


def _stop_helpers(helpers: Sequence[BaseProcess], grace_s: float = 10.0) -> None:
    """SIGTERM the gateway, monitor and demo, and SIGKILL whichever is still
    running after ``grace_s``: at exit, multiprocessing joins every child it
    started, so one that ignored the signal would keep ``up`` running for good."""
    for helper in helpers:
        if helper.is_alive():
            helper.terminate()
    deadline = time.monotonic() + grace_s
    for helper in helpers:
        helper.join(max(0.0, deadline - time.monotonic()))
        if helper.is_alive():
            console.print(f"{helper.name} did not stop within {grace_s:.0f} s; killing it")
            helper.kill()
            helper.join()


def _json_object(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f'not JSON ({exc}); quote it: \'{{"name": "a"}}\'') from exc
    if not isinstance(decoded, dict):
        raise click.BadParameter('must be a JSON object, like \'{"name": "a"}\'')
    return value


@main.command()
@click.argument("type_", metavar="TYPE")
@click.argument("data", callback=_json_object)
@click.option("--key", help="The entity the message is about.")
@click.option("--to", "to", metavar="SERVICE", help="Send to this service's inbox (a command).")
@click.option("--delay-ms", type=click.IntRange(0), help="Deliver after this many milliseconds.")
@pass_state
def publish(
    state: State, type_: str, data: str, key: str | None, to: str | None, delay_ms: int | None
) -> None:
    """Publish a message of TYPE with JSON DATA; prints its id.

    Events go to their topic stream (order.placed -> sc:events:order);
    with --to, the message goes to that service's inbox.
    """
    if "." not in type_:
        raise click.BadParameter("must look like 'topic.name'", param_hint="TYPE")
    message_id = state.run(
        lambda r: Publisher(r, state.keys).publish(type_, data, key=key, to=to, delay_ms=delay_ms)
    )
    click.echo(message_id)


@main.command("call")
@click.argument("target", metavar="SERVICE.METHOD")
@click.argument("data", callback=_json_object, default="{}", required=False)
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.01),
              help="Seconds to wait for the reply.")  # fmt: skip
@pass_state
def call_command(state: State, target: str, data: str, timeout: float) -> None:
    """Call SERVICE.METHOD with JSON DATA and print the reply as JSON.

    An error reply (not found, invalid, ...) or no reply in time exits with 1.
    """
    if target.count(".") != 1:
        raise click.BadParameter("must look like 'service.method'", param_hint="SERVICE.METHOD")

    async def job(redis: Redis) -> Any:
        async with RpcClient(redis, state.keys) as rpc:
            return await rpc.call(target, json.loads(data), timeout=timeout)

    click.echo(json.dumps(state.run(job), indent=2))


main.add_command(config_group)
main.add_command(deploy_group)
main.add_command(dlq_group)
main.add_command(trace_group)
main.add_command(users_group)


@main.command("redis")
@click.option("--stop", is_flag=True, help="Stop the embedded server.")
@pass_state
def redis_command(state: State, stop: bool) -> None:
    """Start (or reuse) the embedded Redis server and print its URL.

    Data lives under .streamcart/ (or $STREAMCART_HOME) with the append-only
    file on and fsynced before every reply, so neither a restart nor an OS crash
    loses an acknowledged write ($STREAMCART_APPENDFSYNC=everysec trades up to a
    second of them for speed); it listens on 127.0.0.1 only.
    """
    from streamcart.bus.embedded import EmbeddedRedis, default_data_dir, ensure_embedded

    if stop:
        server = EmbeddedRedis(default_data_dir())
        if server.running_url() is None:
            click.echo("the embedded server is not running")
            return
        server.stop()
        click.echo("stopped")
        return
    try:
        click.echo(ensure_embedded())
    except StreamcartError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
@click.option("--watch", "-w", type=click.FloatRange(0.2), metavar="SECONDS",
              help="Refresh every SECONDS until Ctrl-C.")  # fmt: skip
@pass_state
def status(state: State, as_json: bool, watch: float | None) -> None:
    """Show every service: instances, counters, rates, lag, pending, dead letters;
    and how durably the server keeps acknowledged writes (its AOF fsync policy)."""
    from rich.console import Group

    from streamcart.registry.report import as_data, breaker_table, durability_line, table
    from streamcart.registry.status import take_snapshot

    def render(snapshot: Any) -> Any:
        breakers = breaker_table(snapshot)
        parts = [table(snapshot), *([] if breakers is None else [breakers])]
        return Group(*parts, durability_line(snapshot))

    def show(snapshot: Any) -> None:
        if as_json:
            click.echo(json.dumps(as_data(snapshot), indent=2))
        else:
            console.print(render(snapshot))

    if watch is None:
        show(state.run(lambda r: take_snapshot(r, state.keys)))
        return

    async def refresh(redis: Redis) -> None:
        from rich.live import Live

        with Live(console=console, auto_refresh=False) as live:
            while True:
                snapshot = await take_snapshot(redis, state.keys)
                if as_json:
                    show(snapshot)
                else:
                    live.update(render(snapshot), refresh=True)
                await asyncio.sleep(watch)

    with contextlib.suppress(KeyboardInterrupt):
        state.run(refresh)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
