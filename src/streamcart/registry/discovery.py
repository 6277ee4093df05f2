"""Discovery: is a service available, and which instances serve it."""

from __future__ import annotations

from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.registry.clock import redis_now_ms
from streamcart.registry.instances import Instance, Registry


class Discovery:
    """Answers callers that want to fail fast when nothing serves a service."""

    def __init__(self, redis: Redis, keys: Keys, *, ttl_ms: int = 5_000) -> None:
        self.redis = redis
        self.keys = keys
        self.registry = Registry(redis, keys, ttl_ms=ttl_ms)

    async def is_available(self, service: str) -> bool:
        """True when at least one instance of ``service`` is alive (one round trip
        for the clock, one for the count)."""
        now = await redis_now_ms(self.redis)
        key = self.keys.instances(service)
        return int(await self.redis.zcount(key, now - self.registry.ttl_ms, "+inf")) > 0

    async def instances(self, service: str) -> list[Instance]:
        """The live instances of ``service``."""
        return await self.registry.alive(service)
