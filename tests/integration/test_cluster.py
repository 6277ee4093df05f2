"""What only a Redis Cluster shows: transactions run on the node owning their
slot, and a worker reads streams that live on different nodes.

These run in the cluster tier (``make test-cluster``) and skip on a standalone server.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import WatchError

from streamcart.bus.connection import is_cluster, transaction
from streamcart.bus.consumer import Consumer
from streamcart.bus.context import Context
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Publisher
from streamcart.bus.service import Service
from tests.integration.support import running, wait_for


@pytest.fixture
def cluster(real_redis: Redis) -> Redis:
    if not is_cluster(real_redis):
        pytest.skip("needs a Redis Cluster (make test-cluster)")
    return real_redis


async def test_a_transaction_runs_on_the_node_that_owns_its_slot(
    cluster: Redis, namespace: str
) -> None:
    key = Keys(namespace).state("orders", "order", "o-1")
    async with await transaction(cluster, key) as pipe:
        assert not is_cluster(pipe)  # the node's own client, not the cluster's pipeline
        await pipe.watch(key)
        assert await pipe.exists(key) == 0
        pipe.multi()
        pipe.hset(key, mapping={"status": "PLACED"})
        pipe.hset(Keys(namespace).state("orders", "order", "o-2"), mapping={"status": "PLACED"})
        await pipe.execute()
    assert await cluster.hget(key, "status") == "PLACED"


async def test_a_watched_key_changed_by_another_client_fails_the_transaction(
    cluster: Redis, namespace: str
) -> None:
    key = Keys(namespace).state("cart", "cart", "u-1")
    async with await transaction(cluster, key) as pipe:
        await pipe.watch(key)
        await cluster.hset(key, "sku-1", 1)  # a neighbour commits first, through the cluster
        pipe.multi()
        pipe.hset(key, "sku-1", 2)
        with pytest.raises(WatchError):
            await pipe.execute()
    assert await cluster.hget(key, "sku-1") == "1"


class Note(msgspec.Struct):
    text: str


def _listener(topics: list[str]) -> Service:
    service = Service("listener", options=ServiceOptions(block_ms=200))

    async def note(msg: Note, ctx: Context) -> None:
        ctx.tx.sadd(ctx.key("seen"), msg.text)

    service.on("listener.note")(note)
    for topic in topics:
        service.on(f"{topic}.noted")(note)
    return service


async def test_a_worker_consumes_streams_that_live_on_different_nodes(
    cluster: Redis, namespace: str
) -> None:
    keys = Keys(namespace)
    topics = [f"topic{i}" for i in range(12)]
    service = _listener(topics)
    await cluster.initialize()  # learns which node holds which slot
    nodes = {cluster.get_node_from_key(stream).name for stream in service.streams(keys)}
    assert len(nodes) > 1, "the streams should spread over the masters"

    consumer = Consumer(service, cluster, name="c1", keys=keys, concurrency=4)
    async with running(consumer):
        await asyncio.wait_for(consumer.ready.wait(), 10)
        publisher = Publisher(cluster, keys)
        for topic in topics:
            await publisher.publish(f"{topic}.noted", {"text": topic})
        await publisher.publish("listener.note", {"text": "command"}, to="listener")

        async def seen_all() -> bool:
            seen = await cluster.smembers(keys.state("listener", "seen"))
            return set(seen) == {*topics, "command"}

        await wait_for(seen_all, within=10, what="every stream read")
