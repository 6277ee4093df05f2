"""Serving Prometheus metrics over HTTP, for one worker process or a pool of them.

A pool's children are separate processes, each with its own counters. The
parent aggregates them with prometheus_client's multiprocess mode: it points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before spawning children (who
inherit the environment and write their values to files there), serves a
registry holding only a ``MultiProcessCollector`` over that directory, and
drops a dead child's live gauges so a restarted child is not counted twice.
A dead child's counters stay: totals never go backwards when a child restarts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from types import TracebackType

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import MetricsHandler
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from streamcart.errors import ConfigurationError

log = logging.getLogger("streamcart.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Prometheus scrapes from elsewhere, so listen on every interface like its exporters do.
DEFAULT_HOST = "0.0.0.0"

ChildExited = Callable[[int], None]


class MetricsServer:
    """A threaded HTTP server exposing ``registry`` on ``port`` (0: any free port).

    A context manager: the port is bound on entry and released on exit.

    Raises:
        ConfigurationError: on entry, when the port cannot be bound.
    """

    def __init__(self, registry: Collector, port: int, host: str = DEFAULT_HOST) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MetricsServer:
        handler = MetricsHandler.factory(self.registry)
        try:
            server = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {self.host}:{self.port} ({exc}); "
                "choose another --metrics-port"
            ) from exc
        server.daemon_threads = True  # a slow scraper never holds up shutdown
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, name="streamcart-metrics", daemon=True
        )
        self._thread.start()
        log.info("serving metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


@contextlib.contextmanager
def process_metrics(port: int | None) -> Iterator[None]:
    """Serve this process's own metrics (the default registry) while inside; no port, no server."""
    if port is None:
        yield
        return
    with MetricsServer(REGISTRY, port):
        yield


@contextlib.contextmanager
def pool_metrics(port: int | None) -> Iterator[ChildExited | None]:
    """Serve the metrics of every process spawned inside this block, added up.

    Yields the function to call with the pid of each child that exits, or None
    when there is no port (and nothing is set up). Children must be spawned,
    not forked from a process that already created metric values.

    Raises:
        ConfigurationError: the port cannot be bound.
    """
    if port is None:
        yield None
        return
    path = tempfile.mkdtemp(prefix="streamcart-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    try:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        with MetricsServer(registry, port):
            # Set only once the port is ours, for the children spawned from here on.
            os.environ[MULTIPROC_ENV] = path
            yield lambda pid: mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)
