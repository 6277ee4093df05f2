"""Opening the Redis client the runtime uses.

A URL whose scheme is ``redis+cluster://`` (or ``rediss+cluster://``) names a
Redis Cluster by any one of its nodes and gets redis-py's cluster client, which
discovers the others; any other URL gets the standalone client. The rest of
streamcart is the same on both: every multi-key command stays in one hash slot.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.asyncio import Redis, RedisCluster

from streamcart.bus.options import ServiceOptions
from streamcart.bus.rawtext import ENCODING_ERRORS

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
        # Bytes that are not UTF-8 decode to surrogates and encode back to the
        # same bytes (see bus/rawtext.py): no reply fails to decode.
        "encoding_errors": ENCODING_ERRORS,
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
        cluster: Any = ClusterClient.open(node_url(url), settings)
        return cluster
    return Redis.from_url(url, **settings)


class ClusterClient(RedisCluster):  # type: ignore[misc]  # redis-py is untyped here
    """redis-py's cluster client, plus a plain client per node for transactions.

    redis-py's cluster pipeline runs every command between WATCH and MULTI on
    a thread of its own with a new event loop, blocking the worker's loop each
    time; the keys of a transaction share a slot, so the standalone client of
    the node owning it does the same job the ordinary way.
    """

    _node_template: tuple[str, dict[str, Any]]
    _node_clients: dict[str, Redis]

    @classmethod
    def open(cls, url: str, settings: dict[str, Any]) -> ClusterClient:
        """A client of the cluster that the node at ``url`` (``redis://``) belongs to."""
        client: ClusterClient = cls.from_url(url, **settings)
        client._node_template = (url, settings)
        client._node_clients = {}
        return client

    def node_client(self, key: str) -> Redis:
        """The plain client of the node that serves ``key``'s slot (made once)."""
        node = self.get_node_from_key(key)
        client = self._node_clients.get(node.name)
        if client is None:
            url, settings = self._node_template
            parts = urlsplit(url)
            credentials = parts.netloc.rpartition("@")[0]
            netloc = f"{credentials}@{node.host}:{node.port}" if credentials else node.name
            client = Redis.from_url(parts._replace(netloc=netloc).geturl(), **settings)
            self._node_clients[node.name] = client
        return client

    async def aclose(self) -> None:
        clients, self._node_clients = self._node_clients, {}
        for client in clients.values():
            await client.aclose()
        await super().aclose()


async def transaction(client: Redis, key: str) -> Any:
    """A ``MULTI`` pipeline (``WATCH`` allowed) for keys in ``key``'s slot: on
    ``client`` itself, or on a cluster through the plain client of the slot's node."""
    if isinstance(client, ClusterClient):
        await client.initialize()  # learns the slots on first use; a no-op after
        return client.node_client(key).pipeline(transaction=True)
    return client.pipeline(transaction=True)


def connect_sync(url: str, **settings: Any) -> redis.Redis:
    """A blocking client (standalone or cluster, as :func:`connect` chooses);
    it decodes bytes that are not UTF-8 as :func:`connect` does."""
    settings.setdefault("encoding_errors", ENCODING_ERRORS)
    if is_cluster_url(url):
        cluster: Any = SyncClusterClient.from_url(node_url(url), **settings)
        return cluster
    return redis.Redis.from_url(url, **settings)


class SyncClusterClient(redis.RedisCluster):  # type: ignore[misc]  # redis-py is untyped here
    """redis-py's blocking cluster client, whose ``close`` closes its sockets too
    (redis-py's leaves each node's connections open)."""

    def close(self) -> None:
        self.disconnect_connection_pools()
        super().close()


def is_cluster(client: Redis) -> bool:
    """Whether ``client`` is a cluster client (some pipelines differ there)."""
    return isinstance(client, RedisCluster)
