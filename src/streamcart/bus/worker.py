"""One worker process: a leased consumer name and a consumer, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid

from redis.exceptions import RedisError

from streamcart.bus.connection import connect
from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.lease import LEASE_MS, ConsumerLease
from streamcart.bus.preflight import check_server
from streamcart.bus.service import Service

log = logging.getLogger("streamcart.worker")


async def run_worker(
    service: Service,
    redis_url: str,
    *,
    namespace: str = "sc",
    concurrency: int = 32,
    token: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Consume for ``service`` until SIGTERM/SIGINT (or ``stop``), then drain."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    keys = Keys(namespace)
    redis = connect(redis_url, options=service.options)
    lease = ConsumerLease(redis, keys, service.name, token or uuid.uuid4().hex)
    try:
        await check_server(redis)
        name = await lease.acquire()
        consumer = Consumer(service, redis, name=name, keys=keys, concurrency=concurrency)
        log.info("%s worker %s consuming %s", service.name, name, ", ".join(consumer.streams))
        renewer = asyncio.create_task(_keep_lease(lease))
        try:
            await consumer.run(stop)
        finally:
            renewer.cancel()
        with contextlib.suppress(RedisError, OSError):
            await lease.release()
        log.info("%s worker %s stopped", service.name, name)
    finally:
        await redis.aclose()


async def _keep_lease(lease: ConsumerLease) -> None:
    while True:
        await asyncio.sleep(LEASE_MS / 3000)
        try:
            if not await lease.renew():
                log.warning("consumer name %s was taken over after a pause", lease.name)
        except (RedisError, OSError) as exc:
            log.debug("lease renewal failed: %s", exc)
