"""The service registry: instances, their heartbeats and their counters.

Each worker process is an instance. Its hash (who, where, what it consumes,
its counters) expires when heartbeats stop; a sorted set per service scores
each instance by its last heartbeat on the Redis clock, so "alive" means
"heard from within the TTL" whatever the hosts' clocks say.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import msgspec
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.registry.clock import redis_now_ms

COUNTERS = ("handled", "failed", "retried", "dead_lettered")


class Instance(msgspec.Struct, kw_only=True):
    """One worker process as the registry knows it."""

    service: str
    instance_id: str
    consumer: str
    host: str
    pid: int
    version: str
    started_at: int
    concurrency: int
    streams: list[str]
    heartbeat_at: int = 0
    in_flight: int = 0
    rate: float = 0.0
    handled: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    # What keeps the instance from working (a refused acknowledgement, a
    # read-only server...), in words; empty while it works.
    waiting: str = ""
    # The config store version its options and settings come from.
    config_version: int = 0

    def to_hash(self) -> dict[str, str]:
        fields = msgspec.structs.asdict(self)
        return {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in fields.items()}

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> Instance:
        data = dict(fields)
        data["streams"] = json.loads(data.get("streams", "[]"))
        return msgspec.convert(data, cls, strict=False)


def consumer_of(instance_id: str) -> str:
    """The consumer name inside an instance id (``<consumer>.<suffix>``)."""
    return instance_id.rsplit(".", 1)[0]


class Registry:
    """Register, heartbeat and look up instances of services."""

    def __init__(self, redis: Redis, keys: Keys, *, ttl_ms: int = 5_000) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = ttl_ms

    async def heartbeat(self, instance: Instance, deltas: Mapping[str, int] | None = None) -> None:
        """Record that ``instance`` is alive (registering it the first time) and
        add ``deltas`` to its service's counters; one pipelined round trip."""
        now = await redis_now_ms(self.redis)
        instance.heartbeat_at = now
        key = self.keys.instance(instance.service, instance.instance_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=instance.to_hash())
            # The hash outlives liveness a little, so a dead instance can still be described.
            pipe.pexpire(key, self.ttl_ms * 4)
            pipe.zadd(self.keys.instances(instance.service), {instance.instance_id: now})
            about = {"streams": instance.streams, "ttl_ms": self.ttl_ms}
            pipe.hset(self.keys.services(), instance.service, json.dumps(about))
            for counter, delta in (deltas or {}).items():
                if delta:
                    pipe.hincrby(self.keys.stats(instance.service), counter, delta)
            await pipe.execute()

    async def deregister(self, service: str, instance_id: str) -> bool:
        """Remove a stopped instance; False if someone removed it first."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.instances(service), instance_id)
            pipe.delete(self.keys.instance(service, instance_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def services(self) -> dict[str, list[str]]:
        """Every service that ever registered, with the streams it consumes."""
        known = await self.redis.hgetall(self.keys.services())
        return {name: json.loads(about)["streams"] for name, about in sorted(known.items())}

    async def alive_ids(self, service: str, *, now_ms: int | None = None) -> list[str]:
        now = now_ms if now_ms is not None else await redis_now_ms(self.redis)
        key = self.keys.instances(service)
        return list(await self.redis.zrangebyscore(key, now - self.ttl_ms, "+inf"))

    async def dead_ids(self, service: str, *, now_ms: int | None = None) -> list[str]:
        """Instances not heard from within the TTL (not yet removed)."""
        now = now_ms if now_ms is not None else await redis_now_ms(self.redis)
        key = self.keys.instances(service)
        return list(await self.redis.zrangebyscore(key, "-inf", f"({now - self.ttl_ms}"))

    async def describe(self, service: str, instance_ids: list[str]) -> list[Instance]:
        """The instances' hashes (those that have not expired yet)."""
        if not instance_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for instance_id in instance_ids:
                pipe.hgetall(self.keys.instance(service, instance_id))
            hashes = await pipe.execute()
        return [Instance.from_hash(h) for h in hashes if h]

    async def alive(self, service: str) -> list[Instance]:
        return await self.describe(service, await self.alive_ids(service))

    async def claim_death(self, service: str, instance_id: str) -> bool:
        """Take the job of handling a dead instance; exactly one caller wins."""
        return bool(await self.redis.zrem(self.keys.instances(service), instance_id))
