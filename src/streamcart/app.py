"""Composition: a worker process with every companion the system runs beside it.

The CLI and the pool call :func:`worker_main`; the pieces it composes live in
their own layers and know nothing of each other.
"""

from __future__ import annotations

import asyncio
import logging

from streamcart.bus.loader import load_service
from streamcart.bus.worker import Companion, run_worker
from streamcart.config.watch import config_watcher
from streamcart.registry.heartbeat import heartbeat
from streamcart.telemetry.metrics import MetricsObserver, metrics_sampler

LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


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
) -> None:
    """Run one worker for the service ``spec`` in this process until a signal.

    With ``metrics`` the worker also records Prometheus metrics (serving them
    is the caller's part: see :mod:`streamcart.telemetry.serving`).
    """
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger("redis").setLevel(max(level, logging.INFO))
    service = load_service(spec)
    asyncio.run(
        run_worker(
            service,
            redis_url,
            namespace=namespace,
            concurrency=concurrency,
            token=token,
            companions=[*companions(), *([metrics_sampler] if metrics else [])],
            observers=[MetricsObserver()] if metrics else [],
        )
    )
