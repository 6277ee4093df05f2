"""Which client a URL gets: a cluster client only for the cluster schemes."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis, RedisCluster

from streamcart.bus.connection import connect, is_cluster, is_cluster_url, node_url


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
