"""Stable consumer names, leased so two live processes never share one.

A worker takes the lowest free name ``<host>-<n>`` of its service. A
restarted process of the same pool slot presents the same token and gets its
old name back at once, so it first finishes what it left pending, and a
group's consumer list does not grow with every restart.
"""

from __future__ import annotations

import socket

from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.scripts import Script

LEASE_MS = 30_000
_lease = Script("lease.lua")


class ConsumerLease:
    """The lease on one consumer name; renew it well within ``LEASE_MS``."""

    def __init__(
        self, redis: Redis, keys: Keys, service: str, token: str, *, lease_ms: int = LEASE_MS
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.service = service
        self.token = token
        self.lease_ms = lease_ms
        self.name = ""

    async def acquire(self, *, host: str | None = None, limit: int = 10_000) -> str:
        host = (host or socket.gethostname()).replace(" ", "_")
        for n in range(limit):
            name = f"{host}-{n}"
            if await _lease(self.redis, [self._key(name)], [self.token, self.lease_ms]):
                self.name = name
                return name
        raise RuntimeError(f"no free consumer name among {limit} for {self.service}")

    async def renew(self) -> bool:
        """False when the lease was lost (this process was paused past it)."""
        return bool(await _lease(self.redis, [self._key(self.name)], [self.token, self.lease_ms]))

    async def release(self) -> None:
        key = self._key(self.name)
        if await self.redis.get(key) == self.token:
            await self.redis.delete(key)

    def _key(self, name: str) -> str:
        return self.keys.consumer_lease(self.service, name)
