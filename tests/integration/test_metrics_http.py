"""`streamcart worker --metrics-port`: Prometheus metrics scraped over HTTP, as a user would."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.support import child_env, cli, free_port, pool_workers

T = TypeVar("T")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@contextmanager
def streamcart(argv: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A CLI process with its output in ``log_path``; killed at exit if still running."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def scrape(port: int) -> Samples | None:
    """Every sample of ``/metrics``, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every series carrying ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def has(samples: Samples, name: str, **labels: str) -> bool:
    return any(n == name and set(labels.items()) <= lbls for n, lbls in samples)


def wait_for(check: Callable[[], T | None], what: str, log: Path, within: float = 20.0) -> T:
    deadline = time.monotonic() + within
    while (value := check()) is None or value is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return value


def gone(pid: int) -> bool:
    try:
        return "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True


def stops_promptly(proc: subprocess.Popen[bytes]) -> int:
    """The exit code; the metrics loop must not hold a stopping worker up."""
    started = time.monotonic()
    code = proc.wait(30)
    assert time.monotonic() - started < 8, "stopping took longer than the drain needs"
    return code


def publish(client: redis.Redis, namespace: str, type_: str, data: str, count: int) -> None:
    pipe = client.pipeline(transaction=False)
    for _ in range(count):
        pipe.xadd(f"{namespace}:inbox:counter", {"type": type_, "data": data})
    pipe.execute()


def test_a_pool_serves_the_metrics_of_all_its_processes(
    redis_url: str, namespace: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "pool.log"
    argv = cli(redis_url, namespace, "worker", "counter", "-p", "2", "-c", "8")
    with streamcart([*argv, "--metrics-port", str(port)], log) as pool:
        wait_for(lambda: len(pool_workers(pool.pid)) == 2, "two worker processes", log)
        children = pool_workers(pool.pid)
        # Slow enough handlers that neither child can take the whole load alone.
        publish(sync_redis, namespace, "counter.increment", '{"name": "a", "sleep_ms": 10}', 300)
        publish(sync_redis, namespace, "counter.fail", '{"name": "broken"}', 3)

        inbox = f"{namespace}:inbox:counter"
        increment = {"service": "counter", "type": "counter.increment"}
        fail = {"service": "counter", "type": "counter.fail"}

        def settled() -> Samples | None:
            samples = scrape(port)
            if (
                samples is None
                or total(samples, "streamcart_messages_handled_total", **increment) < 300
            ):
                return None
            if not total(samples, "streamcart_messages_retried_total", **fail):
                return None
            if total(samples, "streamcart_consumer_lag", service="counter", stream=inbox) != 0:
                return None
            return samples

        samples = wait_for(settled, "300 handled, a retry, no lag", log)
        assert total(samples, "streamcart_messages_handled_total", **increment) == 300
        assert total(samples, "streamcart_handler_seconds_count", **increment) == 300
        assert total(samples, "streamcart_handler_seconds_bucket", le="0.005", **increment) == 0
        assert total(samples, "streamcart_handler_seconds_bucket", le="+Inf", **increment) == 300
        assert total(samples, "streamcart_messages_failed_total", **fail) > 0
        assert total(samples, "streamcart_messages_handled_total", **fail) == 0
        assert has(samples, "streamcart_pending", service="counter", stream=inbox)
        assert has(
            samples,
            "streamcart_consumer_lag",
            service="counter",
            stream=f"{namespace}:inbox:counter",
        )
        assert sync_redis.hget(f"{{{namespace}:counter}}:counts", "a") == "300"

        pool.send_signal(signal.SIGTERM)
        assert stops_promptly(pool) == 0, log.read_text()[-3000:]
    assert all(gone(kid) for kid in children)
    assert scrape(port) is None  # the server went with the pool


def test_a_single_worker_process_serves_its_own_metrics(
    redis_url: str, namespace: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    argv = cli(redis_url, namespace, "worker", "counter", "--metrics-port", str(port))
    with streamcart(argv, log) as worker:
        publish(sync_redis, namespace, "counter.increment", '{"name": "a"}', 50)
        increment = {"service": "counter", "type": "counter.increment"}

        def handled_all() -> Samples | None:
            samples = scrape(port)
            if samples is None:
                return None
            if total(samples, "streamcart_messages_handled_total", **increment) != 50:
                return None
            return samples if has(samples, "streamcart_consumer_lag", service="counter") else None

        samples = wait_for(handled_all, "50 handled and a lag sample", log)
        assert total(samples, "streamcart_handler_seconds_count", **increment) == 50
        assert has(samples, "streamcart_in_flight", service="counter")

        worker.send_signal(signal.SIGTERM)
        assert stops_promptly(worker) == 0, log.read_text()[-3000:]
    assert scrape(port) is None


def test_metrics_off_serves_nothing(
    redis_url: str, namespace: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    with streamcart(cli(redis_url, namespace, "worker", "counter", "-p", "2"), log) as pool:
        wait_for(lambda: len(pool_workers(pool.pid)) == 2, "two worker processes", log)
        publish(sync_redis, namespace, "counter.increment", '{"name": "a"}', 10)
        counts = f"{{{namespace}:counter}}:counts"
        wait_for(lambda: sync_redis.hget(counts, "a") == "10", "10 handled", log)
        assert scrape(port) is None
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(30) == 0


@pytest.mark.parametrize("command", [["worker", "counter", "-p", "2"], ["up"]])
def test_a_metrics_port_in_use_fails_with_exit_1_and_a_hint(
    redis_url: str, namespace: str, tmp_path: Path, command: list[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = cli(redis_url, namespace, *command, "--metrics-port", str(port))
        done = subprocess.run(argv, env=child_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "--metrics-port" in done.stderr
