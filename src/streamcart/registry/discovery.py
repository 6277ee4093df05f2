"""Discovery: is a service available, and which instances serve it."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.scripts import Script
from streamcart.registry.instances import Instance, Registry

_alive = Script("alive.lua", "streamcart.registry")


class Discovery:
    """Answers callers that want to fail fast when nothing serves a service.

    With ``cache_ms``, a "yes" is remembered that long (a hot path such as the
    gateway then skips the round trip on most requests); a "no" never is, so a
    service that comes up is seen at once.
    """

    def __init__(self, redis: Redis, keys: Keys, *, ttl_ms: int = 5_000, cache_ms: int = 0) -> None:
        self.redis = redis
        self.keys = keys
        self.registry = Registry(redis, keys, ttl_ms=ttl_ms)
        self.cache_ms = cache_ms
        self._seen_alive: dict[str, float] = {}

    async def is_available(self, service: str) -> bool:
        """True when at least one instance of ``service`` is alive: its newest
        heartbeat is within the TTL, on the Redis clock (one round trip)."""
        if self.cache_ms:
            seen = self._seen_alive.get(service)
            if seen is not None and (time.monotonic() - seen) * 1000 < self.cache_ms:
                return True
        alive = bool(
            await _alive(self.redis, [self.keys.instances(service)], [self.registry.ttl_ms])
        )
        if alive and self.cache_ms:
            self._seen_alive[service] = time.monotonic()
        return alive

    async def instances(self, service: str) -> list[Instance]:
        """The live instances of ``service``."""
        return await self.registry.alive(service)
