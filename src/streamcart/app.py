"""Composition: a worker process with every companion the system runs beside it.

The CLI and the pool call :func:`worker_main`; the pieces it composes live in
their own layers and know nothing of each other.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.synchronize import Event as EventType

from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.bus.loader import load_service
from streamcart.bus.worker import Companion, WorkerRuntime, run_worker
from streamcart.config.watch import config_watcher
from streamcart.registry.health import run_monitor
from streamcart.registry.heartbeat import heartbeat
from streamcart.telemetry.export import setup_tracing, use_globally
from streamcart.telemetry.metrics import MetricsObserver, metrics_sampler
from streamcart.telemetry.tracing import TraceLogFilter

log = logging.getLogger("streamcart.app")
# ``trace`` is " trace=<id>" inside a recorded trace, else empty (TraceLogFilter).
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s%(trace)s"


def configure_logging(level: int) -> None:
    """Log lines to stderr, each with the trace id of the work it is about."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, TraceLogFilter) for f in handler.filters):
            handler.addFilter(TraceLogFilter())
    logging.getLogger("redis").setLevel(max(level, logging.INFO))
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))  # a line per request


def companions() -> list[Companion]:
    """What runs beside every consumer."""
    return [heartbeat, config_watcher]


def worker_main(
    spec: str,
    redis_url: str,
    namespace: str,
    concurrency: int,
    token: str | None,
    level: int,
    metrics: bool = False,
    ready: EventType | None = None,
) -> None:
    """Run one worker for the service ``spec`` in this process until a signal.

    With ``metrics`` the worker also records Prometheus metrics (serving them
    is the caller's part: see :mod:`streamcart.telemetry.serving`). ``ready``
    is set once the worker consumes (its pool tells a crash loop by it).
    """
    configure_logging(level)
    if token is not None:
        stop_when_orphaned()
    service = load_service(spec)
    tracer = setup_tracing(service.name, redis_url, Keys(namespace))
    if tracer is not None:
        use_globally(tracer)
    try:
        asyncio.run(
            run_worker(
                service,
                redis_url,
                namespace=namespace,
                concurrency=concurrency,
                token=token,
                companions=[
                    *companions(),
                    *([metrics_sampler] if metrics else []),
                    *([announce_ready(ready)] if ready is not None else []),
                ],
                observers=[MetricsObserver()] if metrics else [],
            )
        )
    finally:
        if tracer is not None:
            tracer.shutdown()  # exports what is buffered


def announce_ready(ready: EventType) -> Companion:
    """A companion that sets ``ready`` once the worker consumes."""

    async def announce(runtime: WorkerRuntime) -> None:
        stopped = asyncio.create_task(runtime.stop.wait())
        consuming = asyncio.create_task(runtime.consumer.ready.wait())
        await asyncio.wait([stopped, consuming], return_when=asyncio.FIRST_COMPLETED)
        if consuming.done():
            ready.set()
        for task in (stopped, consuming):
            task.cancel()

    return announce


def stop_when_orphaned(interval_s: float = 1.0) -> None:
    """Stop this pool child gracefully (SIGTERM to itself) once its pool is
    gone: a supervisor killed with SIGKILL must not leave workers behind."""
    supervisor = multiprocessing.parent_process()  # known even if it died before we got here
    if supervisor is None or supervisor.pid is None:
        return
    parent = supervisor.pid

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        log.warning("the pool supervisor (pid %d) is gone; stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def monitor_main(redis_url: str, namespace: str, level: int) -> None:
    """Run the health monitor in this process until SIGTERM or SIGINT."""
    configure_logging(level)
    asyncio.run(_monitor(redis_url, namespace))


async def _monitor(redis_url: str, namespace: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    redis = connect(redis_url)
    try:
        await run_monitor(redis, Keys(namespace), stop)
    finally:
        await redis.aclose()


def demo_main(redis_url: str, namespace: str, port: int) -> None:
    """Fill the demo shop once its services run, then print the walkthrough."""
    from streamcart.demo import seed, walkthrough

    configure_logging(logging.INFO)

    async def main() -> None:
        redis = connect(redis_url)
        try:
            await seed(redis, Keys(namespace))
        finally:
            await redis.aclose()

    asyncio.run(main())
    print(walkthrough(f"http://127.0.0.1:{port}", redis_url), flush=True)
