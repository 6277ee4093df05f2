"""Which client a URL gets: a cluster client only for the cluster schemes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from redis.asyncio import Redis, RedisCluster

from streamcart.bus.connection import (
    ClusterClient,
    connect,
    is_cluster,
    is_cluster_url,
    node_url,
)


@pytest.mark.parametrize(
    ("url", "cluster", "node"),
    [
        ("redis://h:6379/0", False, "redis://h:6379/0"),
        ("rediss://:pw@h:6380", False, "rediss://:pw@h:6380"),
        ("redis+cluster://h:7000", True, "redis://h:7000"),
        ("rediss+cluster://user:pw@h:7000", True, "rediss://user:pw@h:7000"),
    ],
)
def test_the_scheme_says_whether_the_url_names_a_cluster(
    url: str, cluster: bool, node: str
) -> None:
    assert is_cluster_url(url) is cluster
    assert node_url(url) == node


async def test_a_cluster_url_gets_the_cluster_client_and_a_plain_one_does_not() -> None:
    # Neither connects until its first command.
    plain = connect("redis://127.0.0.1:1/0")
    cluster = connect("redis+cluster://127.0.0.1:1")
    try:
        assert isinstance(plain, Redis) and not is_cluster(plain)
        assert isinstance(cluster, RedisCluster) and is_cluster(cluster)
        # The blocking reads' socket timeout reaches every node of the cluster too.
        assert (
            cluster.get_connection_kwargs()["socket_timeout"]
            == plain.get_connection_kwargs()["socket_timeout"]
        )
    finally:
        await plain.aclose()
        await cluster.aclose()


async def test_a_node_client_keeps_the_clusters_scheme_credentials_and_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = ClusterClient.open("rediss://app:s3cret@seed:7000/0", {"socket_timeout": 12.0})
    node = SimpleNamespace(host="10.0.0.7", port=7001, name="10.0.0.7:7001")
    monkeypatch.setattr(cluster, "get_node_from_key", lambda key: node)
    try:
        client = cluster.node_client("{sc:orders}:order:1")
        settings = client.get_connection_kwargs()
        assert (settings["host"], settings["port"]) == ("10.0.0.7", 7001)
        assert (settings["username"], settings["password"]) == ("app", "s3cret")
        assert settings["socket_timeout"] == 12.0
        assert client.connection_pool.connection_class.__name__ == "SSLConnection"
        assert cluster.node_client("{sc:orders}:order:2") is client  # one per node
    finally:
        await cluster.aclose()
