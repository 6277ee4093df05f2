"""One worker process: a leased consumer name, a consumer, and its companions.

Companions are async functions that run beside the consumer for the life of
the worker (heartbeats, config reload, metrics): each gets the
:class:`WorkerRuntime` and returns once ``runtime.stop`` is set. They are passed in, not
registered globally, so a test can run a worker with exactly the ones it wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamcart.bus.connection import connect
from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.lease import ConsumerLease
from streamcart.bus.observer import ConsumerObserver
from streamcart.bus.preflight import check_server
from streamcart.bus.service import Service
from streamcart.errors import CompanionError, LeaseLostError

log = logging.getLogger("streamcart.worker")


@dataclass
class WorkerRuntime:
    """What a companion of a running worker can see and use."""

    service: Service
    redis: Redis
    keys: Keys
    consumer: Consumer
    instance_id: str
    stop: asyncio.Event
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)


Companion = Callable[[WorkerRuntime], Awaitable[None]]


async def run_worker(
    service: Service,
    redis_url: str,
    *,
    namespace: str = "sc",
    concurrency: int = 32,
    token: str | None = None,
    stop: asyncio.Event | None = None,
    companions: Sequence[Companion] = (),
    observers: Sequence[ConsumerObserver] = (),
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
        consumer = Consumer(
            service, redis, name=name, keys=keys, concurrency=concurrency, observers=observers
        )
        runtime = WorkerRuntime(
            service, redis, keys, consumer, instance_id=f"{name}.{uuid.uuid4().hex[:6]}", stop=stop
        )
        log.info("%s worker %s consuming %s", service.name, name, ", ".join(consumer.streams))
        keeper = asyncio.create_task(keep_lease(lease, stop))
        beside = [asyncio.create_task(_contained(c, runtime)) for c in companions]
        try:
            await consumer.run(stop)
        finally:
            stop.set()
            await _finish([keeper, *beside])
        failed = [task for task in beside if _returned(task, False)]
        if failed:
            raise CompanionError(f"a companion of the {service.name} worker {name} failed")
        if _returned(keeper, False):
            raise LeaseLostError(
                f"consumer name {name} of {service.name} was taken by another process while "
                "this one was paused; stopped so that two processes never share it"
            )
        with contextlib.suppress(RedisError, OSError):
            await lease.release()
        log.info("%s worker %s stopped", service.name, name)
    finally:
        await redis.aclose()


async def _contained(companion: Companion, runtime: WorkerRuntime) -> bool:
    """Run ``companion``; False if it failed. A companion handles its own passing
    errors, so one that raised cannot recover: it stops the worker, whose pool
    starts a new one, rather than leave a worker without its heartbeat, say."""
    try:
        await companion(runtime)
    except asyncio.CancelledError:
        raise
    except Exception:
        name = getattr(companion, "__name__", companion)
        log.exception("companion %s failed; stopping the worker", name)
        runtime.stop.set()
        return False
    return True


async def _finish(tasks: Sequence[asyncio.Task[Any]], grace_s: float = 10.0) -> None:
    """Let companions see ``stop`` and return; cancel only those that do not.

    Cancelling is the last resort: on Python 3.11 a cancel that lands while a
    Redis call times out can be swallowed, leaving the task running.
    """
    _, late = await asyncio.wait(tasks, timeout=grace_s)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=grace_s)


async def keep_lease(lease: ConsumerLease, stop: asyncio.Event) -> bool:
    """Renew ``lease`` until ``stop``; False (with ``stop`` set) once it was lost.

    A process paused past its lease (SIGSTOP, a long GC, a frozen VM) finds
    another process under its consumer name: it must stop using the name, or
    the two would read, renew and acknowledge each other's entries.
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), lease.lease_ms / 3000)
            return True
        try:
            if not await lease.renew():
                log.error("consumer name %s was taken over after a pause; stopping", lease.name)
                stop.set()
                return False
        except (RedisError, OSError) as exc:
            log.debug("lease renewal failed: %s", exc)
    return True


def _returned(task: asyncio.Task[Any], value: object) -> bool:
    """Whether ``task`` finished by returning ``value`` (not cancelled, not raising)."""
    return (
        task.done() and not task.cancelled() and task.exception() is None and task.result() is value
    )
