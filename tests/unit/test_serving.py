"""Serving /metrics: one process's registry, or the sum over a pool's processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from streamcart.errors import ConfigurationError
from streamcart.telemetry.serving import MULTIPROC_ENV, MetricsServer, pool_metrics

# A child of the pool, as far as metrics go: count, hold, exit.
CHILD = """
from streamcart.telemetry.metrics import MetricsObserver
observer = MetricsObserver()
for _ in range({handled}):
    observer.handled("counter", "counter.increment", 0.001)
observer.metrics.in_flight.labels("counter").set({in_flight})
import os
print(os.getpid())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on the page, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def run_child(handled: int, in_flight: int) -> int:
    code = CHILD.format(handled=handled, in_flight=in_flight)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    return int(done.stdout.strip())


def test_a_server_exposes_its_registry_and_gives_the_port_back_on_exit() -> None:
    registry = CollectorRegistry()
    Counter("streamcart_things", "Things.", registry=registry).inc(3)
    with MetricsServer(registry, 0, host="127.0.0.1") as server:
        assert scrape(server.port)[("streamcart_things_total", ())] == 3
        port = server.port
    with MetricsServer(registry, port, host="127.0.0.1"):  # a restart gets the port back
        assert scrape(port)[("streamcart_things_total", ())] == 3


def test_a_port_in_use_is_a_configuration_error_naming_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(ConfigurationError, match="--metrics-port"),
            MetricsServer(CollectorRegistry(), port, host="127.0.0.1"),
        ):
            pass


def test_no_port_sets_nothing_up() -> None:
    with pool_metrics(None) as child_exited:
        assert child_exited is None
        assert MULTIPROC_ENV not in os.environ


def test_a_pool_serves_the_sum_over_its_children_and_forgets_dead_ones_live_gauges() -> None:
    port = free_port()
    with pool_metrics(port) as child_exited:
        assert child_exited is not None
        directory = Path(os.environ[MULTIPROC_ENV])
        first = run_child(handled=5, in_flight=2)
        second = run_child(handled=7, in_flight=3)

        samples = scrape(port)
        handled = (
            "streamcart_messages_handled_total",
            (("service", "counter"), ("type", "counter.increment")),
        )
        in_flight = ("streamcart_in_flight", (("service", "counter"),))
        assert samples[handled] == 12
        assert samples[in_flight] == 5

        child_exited(first)
        samples = scrape(port)
        assert samples[handled] == 12  # a dead child's counts stay in the totals
        assert samples[in_flight] == 3  # but what it held is gone with it
        child_exited(second)
        assert in_flight not in scrape(port)
    assert MULTIPROC_ENV not in os.environ
    assert not directory.exists()
