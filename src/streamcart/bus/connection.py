"""Opening the Redis client the runtime uses."""

from __future__ import annotations

from redis.asyncio import Redis

from streamcart.bus.options import ServiceOptions

MAX_CONNECTIONS = 1_000


def connect(url: str, *, options: ServiceOptions | None = None) -> Redis:
    """A client whose socket timeout stays above the blocking-read time.

    A socket timeout shorter than ``XREADGROUP BLOCK`` turns every quiet
    second into a spurious timeout and a reconnect.
    """
    block_s = (options or ServiceOptions()).block_ms / 1000
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=block_s + 10,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=30,
        # redis-py caps a pool at 100 connections unless told otherwise; handlers,
        # blocking reads and RPC calls in flight can need more.
        max_connections=MAX_CONNECTIONS,
    )
