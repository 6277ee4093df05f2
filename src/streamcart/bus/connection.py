"""Opening the Redis client the runtime uses.

A URL whose scheme is ``redis+cluster://`` (or ``rediss+cluster://``) names a
Redis Cluster by any one of its nodes and gets redis-py's cluster client, which
discovers the others; any other URL gets the standalone client. The rest of
streamcart is the same on both: every multi-key command stays in one hash slot.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.asyncio import Redis, RedisCluster

from streamcart.bus.options import ServiceOptions

MAX_CONNECTIONS = 1_000
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES


def node_url(url: str) -> str:
    """The plain ``redis://`` (or ``rediss://``) URL of the node a cluster URL names."""
    scheme, sep, rest = url.partition("://")
    return f"{CLUSTER_SCHEMES.get(scheme, scheme)}{sep}{rest}"


def connect(url: str, *, options: ServiceOptions | None = None) -> Redis:
    """A client whose socket timeout stays above the blocking-read time.

    A socket timeout shorter than ``XREADGROUP BLOCK`` turns every quiet
    second into a spurious timeout and a reconnect.
    """
    block_s = (options or ServiceOptions()).block_ms / 1000
    settings: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": block_s + 10,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 30,
        # redis-py caps a pool at 100 connections unless told otherwise; handlers,
        # blocking reads and RPC calls in flight can need more. (Per node on a cluster.)
        "max_connections": MAX_CONNECTIONS,
    }
    if is_cluster_url(url):
        # Typed as Redis: the cluster client answers the same commands.
        cluster: Any = RedisCluster.from_url(node_url(url), **settings)
        return cluster
    return Redis.from_url(url, **settings)


def connect_sync(url: str, **settings: Any) -> redis.Redis:
    """A blocking client (standalone or cluster, as :func:`connect` chooses)."""
    if is_cluster_url(url):
        cluster: Any = redis.RedisCluster.from_url(node_url(url), **settings)
        return cluster
    return redis.Redis.from_url(url, **settings)


def is_cluster(redis: Redis) -> bool:
    """Whether ``redis`` is a cluster client (some pipelines differ there)."""
    return isinstance(redis, RedisCluster)
