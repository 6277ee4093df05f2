"""Helpers for tests that run workers as real processes against a real server.

Workers are started as ``python -m streamcart ... worker SPEC`` with their output
in a log file; :class:`Workers` kills whatever is still running when the test
ends, whatever happened. Conditions are polled with a deadline, never slept on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import pytest
from redis.asyncio import Redis, RedisCluster

from streamcart.bus.connection import is_cluster_url, node_url
from streamcart.bus.consumer import Consumer

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.02
_NAME_LINE = re.compile(r"worker (\S+) consuming")
_LOG_TAIL_CHARS = 4000


def child_env() -> dict[str, str]:
    """The environment of a child process: the repo root importable, so
    ``tests.integration.services`` resolves as a service spec."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("STREAMCART_NAMESPACE", None)
    return env


def cli(url: str, namespace: str, *args: str) -> list[str]:
    """The argv of a ``streamcart`` command against ``url`` in ``namespace``."""
    return [sys.executable, "-m", "streamcart", "--redis-url", url, "--namespace", namespace, *args]


def raw_client(url: str) -> Redis:
    """A client that neither decodes nor encodes text: it reads and writes stored bytes."""
    if is_cluster_url(url):
        cluster: Any = RedisCluster.from_url(node_url(url))
        return cluster
    return Redis.from_url(url)


def free_port() -> int:
    """A TCP port nothing listens on right now, for a server that must keep its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_process(
    argv: list[str], *, stdin: bytes = b"", within: float = 60.0
) -> tuple[int, str, str]:
    """Run a short command to its end: (exit code, stdout, stderr); killed after ``within``."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=child_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), within)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


class Worker:
    """One ``streamcart worker`` process (``--processes 1``: the worker is that process)."""

    def __init__(
        self, argv: list[str], log_path: Path, *, env: dict[str, str] | None = None
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log: IO[bytes] | None = open(log_path, "ab")  # noqa: SIM115 (closed in kill)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env={**child_env(), **(env or {})},
                start_new_session=True,  # kill() takes a pool's children with it
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, within: float) -> int:
        """The exit code, once the process has exited; fails after ``within`` seconds."""
        deadline = time.monotonic() + within
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"worker {self.pid} still running after {within}s\n{self.tail()}")
            await asyncio.sleep(POLL_S)
        return code

    async def consumer_name(self, within: float = 20.0) -> str:
        """The consumer name the worker leased, from its start-up log line."""

        async def probe() -> str | None:
            if not self.alive():
                pytest.fail(f"worker {self.pid} exited with {self.proc.returncode}\n{self.tail()}")
            found = _NAME_LINE.search(self.log())
            return found.group(1) if found else None

        name = await wait_for(probe, within=within, what=f"worker {self.pid} to start")
        assert name is not None
        return name

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self) -> str:
        return f"--- log of {self.log_path.name} ---\n{self.log()[-_LOG_TAIL_CHARS:]}"

    def kill(self) -> None:
        """SIGKILL if still running (works on a stopped process too), reap, close the log."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a pool's children, if any are left
        if self._log is not None:
            self._log.close()
            self._log = None


class Workers:
    """Starts worker processes for one test and kills every one of them at exit."""

    def __init__(
        self, url: str, namespace: str, log_dir: Path, *, env: dict[str, str] | None = None
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.log_dir = log_dir
        self.env = env
        self.started: list[Worker] = []

    def start(self, spec: str, *, concurrency: int = 16) -> Worker:
        argv = cli(self.url, self.namespace, "worker", spec, "-c", str(concurrency))
        return self.start_command(argv, f"worker-{len(self.started)}")

    def start_command(self, argv: list[str], name: str) -> Worker:
        """Any ``streamcart`` command as a process (``cli(...)`` builds ``argv``)."""
        log_path = self.log_dir / f"{name}.log"
        worker = Worker(argv, log_path, env=self.env)
        self.started.append(worker)
        return worker

    def tails(self) -> str:
        return "\n".join(worker.tail() for worker in self.started)

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for worker in self.started:
            worker.kill()


@contextlib.asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[Consumer]:
    """Run an in-process ``consumer`` in this event loop; stop it gracefully at exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, consumer.options.shutdown_grace_s + 5)


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    context: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns a truthy value and return that value.

    Fails the test after ``within`` seconds, naming ``what`` and the last value
    seen, plus whatever ``context`` describes (worker logs, say).
    """
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{context()}" if context else ""
            pytest.fail(f"timed out after {within}s waiting for {what}; last: {value!r}{extra}")
        await asyncio.sleep(POLL_S)


# -- the counter's contract keys ------------------------------------------------
class CounterKeys:
    """The counter service's streams (contract section 3) and state keys, by their names."""

    def __init__(self, namespace: str, service: str = "counter") -> None:
        self.namespace = namespace
        self.group = service
        self.inbox = f"{namespace}:inbox:{service}"
        self.dlq = f"{namespace}:dlq:{service}"
        self.events = f"{namespace}:events:{service}"
        self._tag = f"{{{namespace}:{service}}}"
        self.counts = self.state("counts")
        self.applied = self.state("applied")
        self.fixed = self.state("fixed")
        self.outbox = self.state("outbox")

    def state(self, name: str) -> str:
        """A key of the service's own hash slot."""
        return f"{self._tag}:{name}"


async def pending(redis: Redis, stream: str, group: str) -> int:
    """How many entries of ``stream`` are delivered to ``group`` but not acknowledged."""
    return int((await redis.xpending(stream, group))["pending"])


async def pending_by_consumer(redis: Redis, stream: str, group: str) -> dict[str, int]:
    return {
        row["name"]: int(row["pending"])
        for row in await redis.xinfo_consumers(stream, group)
        if int(row["pending"])
    }


async def pending_ids(redis: Redis, stream: str, group: str, consumer: str) -> list[str]:
    rows = await redis.xpending_range(
        stream, group, min="-", max="+", count=1_000_000, consumername=consumer
    )
    return [row["message_id"] for row in rows]


async def wait_applied(
    redis: Redis,
    keys: CounterKeys,
    count: int,
    *,
    within: float,
    context: Callable[[], str] | None = None,
) -> dict[str, str]:
    """Wait until ``count`` messages are applied and nothing is pending; the applied hash."""

    async def probe() -> dict[str, str] | None:
        applied: dict[str, str] = await redis.hgetall(keys.applied)
        if len(applied) < count or await pending(redis, keys.inbox, keys.group):
            return None
        return applied

    result = await wait_for(
        probe, within=within, what=f"{count} applied and none pending", context=context
    )
    assert result is not None
    return result


def assert_each_applied_once(applied: dict[str, str], expected_ids: set[str]) -> None:
    """Exactly the expected messages were applied, each exactly once."""
    assert set(applied) == expected_ids, (
        f"missing {sorted(expected_ids - set(applied))[:5]}, "
        f"unexpected {sorted(set(applied) - expected_ids)[:5]}"
    )
    twice = {mid: n for mid, n in applied.items() if n != "1"}
    assert not twice, f"applied more than once: {dict(list(twice.items())[:5])}"


def poll_until(check: Callable[[], bool], within: float = 30.0, what: str = "") -> None:
    """The blocking twin of :func:`wait_for`, for tests that drive the CLI."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.05)


def pool_workers(pid: int) -> set[int]:
    """The spawned worker processes of a pool (not its helpers, like a resource tracker)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = {int(p) for p in path.read_text().split()} if path.exists() else set()
    return {kid for kid in kids if b"spawn_main" in _cmdline(kid)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
