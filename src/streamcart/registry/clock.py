"""The Redis server's clock: liveness never depends on a host's own clock."""

from __future__ import annotations

from redis.asyncio import Redis


async def redis_now_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
