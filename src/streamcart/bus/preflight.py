"""Start-up checks of the Redis server that holds the bus."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from streamcart.errors import ConfigurationError

log = logging.getLogger("streamcart.preflight")
MIN_VERSION = (7, 0)


async def check_server(redis: Redis) -> None:
    """Refuse a server that could evict the bus or lacks what the bus uses.

    Under any eviction policy but ``noeviction`` Redis may drop a whole stream
    when memory runs short: messages would vanish without an error.

    Raises:
        ConfigurationError: the eviction policy or the version is wrong; the
            message says how to fix it.
    """
    info = await redis.info("server")
    version = tuple(int(part) for part in str(info.get("redis_version", "0.0")).split(".")[:2])
    if version < MIN_VERSION:
        raise ConfigurationError(
            f"Redis {info.get('redis_version')} is too old: streamcart needs 7.0 or newer "
            "(XAUTOCLAIM reports deleted entries from 7.0 on)"
        )
    try:
        policy = (await redis.config_get("maxmemory-policy")).get("maxmemory-policy")
    except ResponseError:
        log.warning("cannot read maxmemory-policy (CONFIG is disabled); make sure it is noeviction")
        return
    if policy and policy != "noeviction":
        raise ConfigurationError(
            f"Redis maxmemory-policy is {policy!r}: it may evict streams and lose messages. "
            "Set it to noeviction (CONFIG SET maxmemory-policy noeviction, or in redis.conf)"
        )
