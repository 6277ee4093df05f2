"""The registry companion of a worker: heartbeats, and watching its peers.

Every ``heartbeat_ms`` the instance refreshes its registration and adds its
counters to the service's totals. It also looks for peers of its service that
went silent: the first live instance to notice a dead one takes over its
pending entries, publishes ``system.instance_down`` and, once the dead
consumer owns nothing, removes it from the groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from redis.exceptions import RedisError

from streamcart import __version__
from streamcart.bus.publisher import Publisher
from streamcart.bus.worker import WorkerRuntime
from streamcart.registry.clock import redis_now_ms
from streamcart.registry.instances import COUNTERS, Instance, Registry, consumer_of
from streamcart.registry.takeover import remove_if_idle, take_over, tidy_consumers
from streamcart.resilience import breaker_board

log = logging.getLogger("streamcart.registry")
TIDY_EVERY_S = 60.0


def describe(runtime: WorkerRuntime) -> Instance:
    consumer = runtime.consumer
    return Instance(
        service=runtime.service.name,
        instance_id=runtime.instance_id,
        consumer=consumer.name,
        host=runtime.host,
        pid=runtime.pid,
        version=__version__,
        started_at=int(runtime.started_at * 1000),
        concurrency=consumer.concurrency,
        streams=list(consumer.streams),
    )


async def heartbeat(runtime: WorkerRuntime) -> None:
    """Run until the worker stops; deregisters it on the way out."""
    instance = describe(runtime)
    publisher = Publisher(runtime.redis, runtime.keys)
    reported = dict.fromkeys(COUNTERS, 0)
    announced = False
    last_beat = time.monotonic()
    last_tidy = 0.0
    try:
        while not runtime.stop.is_set():
            options = runtime.consumer.options
            registry = Registry(runtime.redis, runtime.keys, ttl_ms=options.instance_ttl_ms)
            try:
                now = time.monotonic()
                deltas = _deltas(runtime, reported)
                instance.rate = deltas["handled"] / max(now - last_beat, 1e-3)
                instance.in_flight = runtime.consumer.in_flight
                instance.waiting = runtime.consumer.waiting_for or ""
                instance.config_version = runtime.consumer.config_version
                for counter in COUNTERS:
                    setattr(instance, counter, reported[counter] + deltas[counter])
                await registry.heartbeat(instance, deltas)
                reported = {c: getattr(instance, c) for c in COUNTERS}
                last_beat = now
                if not announced:
                    await publisher.publish("system.instance_up", _event(instance, "started"))
                    announced = True
                await sweep_dead(runtime, registry, publisher)
                await _report_breakers(runtime)
                if now - last_tidy > TIDY_EVERY_S:
                    last_tidy = now
                    await tidy_consumers(
                        runtime.redis,
                        runtime.keys,
                        runtime.consumer.streams,
                        runtime.consumer.group,
                        runtime.service.name,
                        idle_ms=options.instance_ttl_ms * 10,
                    )
            except RedisError as exc:
                log.debug("heartbeat failed: %s", exc)
            except Exception:
                # Sweeping or tidying went wrong: beating on matters more (a silent
                # instance is declared dead and its work taken over while it runs).
                log.exception("heartbeat step failed; beating on")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stop.wait(), options.heartbeat_ms / 1000)
    finally:
        with contextlib.suppress(RedisError, OSError, asyncio.CancelledError):
            await asyncio.wait_for(_leave(runtime, instance, publisher), 5)


async def _report_breakers(runtime: WorkerRuntime) -> None:
    """Publish the states of the breakers around this worker's calls, for `status`."""
    breakers = runtime.consumer.rpc.breakers
    if breakers is not None and (states := breakers.snapshots()):
        owner = f"{runtime.service.name}@{runtime.instance_id}"
        await breaker_board.publish(runtime.redis, runtime.keys, owner, states)


def _deltas(runtime: WorkerRuntime, reported: dict[str, int]) -> dict[str, int]:
    stats = runtime.consumer.stats
    return {counter: getattr(stats, counter) - reported[counter] for counter in COUNTERS}


async def _leave(runtime: WorkerRuntime, instance: Instance, publisher: Publisher) -> None:
    registry = Registry(
        runtime.redis, runtime.keys, ttl_ms=runtime.consumer.options.instance_ttl_ms
    )
    reported = {c: getattr(instance, c) for c in COUNTERS}
    await registry.heartbeat(instance, _deltas(runtime, reported))  # the last counts
    if await registry.deregister(instance.service, instance.instance_id):
        await publisher.publish("system.instance_down", _event(instance, "stopped"))


async def sweep_dead(runtime: WorkerRuntime, registry: Registry, publisher: Publisher) -> None:
    """Handle each peer that missed its heartbeats (once, whoever wins the claim)."""
    service = runtime.service.name
    now = await redis_now_ms(runtime.redis)
    dead = await registry.dead_ids(service, now_ms=now)
    if not dead:
        return
    in_use = {consumer_of(i) for i in await registry.alive_ids(service, now_ms=now)}
    for instance_id in dead:
        described = await registry.describe(service, [instance_id])
        if not await registry.claim_death(service, instance_id):
            continue  # another instance is handling it
        consumer = consumer_of(instance_id)
        taken = 0
        # A restarted process that got the same name back finishes its own entries.
        if consumer not in in_use and consumer != runtime.consumer.name:
            streams, group = runtime.consumer.streams, runtime.consumer.group
            result = await take_over(runtime.redis, streams, group, consumer, runtime.consumer.name)
            taken = result.claimed
            if taken:
                runtime.consumer.request_recovery()
            for stream, entry_id in result.deleted:
                await runtime.consumer.dead_letter_trimmed(stream, entry_id)
            # Its holder is dead: free the name, so the now empty consumer can go.
            await runtime.redis.delete(runtime.keys.consumer_lease(service, consumer))
            await remove_if_idle(runtime.redis, runtime.keys, streams, group, consumer, service)
        data = _event(described[0], "missed heartbeats") if described else {}
        data |= {"service": service, "instance_id": instance_id, "consumer": consumer}
        data["taken_over"] = taken
        await publisher.publish("system.instance_down", data)
        log.warning("instance %s of %s is dead; took over %d entries", instance_id, service, taken)


def _event(instance: Instance, reason: str) -> dict[str, object]:
    return {
        "service": instance.service,
        "instance_id": instance.instance_id,
        "consumer": instance.consumer,
        "host": instance.host,
        "pid": instance.pid,
        "reason": reason,
    }
