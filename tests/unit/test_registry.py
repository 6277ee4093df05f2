"""The registry on fakeredis: liveness on the Redis clock, takeover, tidying."""

from __future__ import annotations

import asyncio

from fakeredis import FakeAsyncRedis

from streamcart.registry import Discovery, Instance, Registry
from streamcart.registry.instances import consumer_of
from streamcart.registry.takeover import remove_if_idle, take_over, tidy_consumers
from tests.unit.support import KEYS

STREAM = KEYS.inbox("orders")


def instance(instance_id: str, **counters: int) -> Instance:
    return Instance(
        service="orders",
        instance_id=instance_id,
        consumer=consumer_of(instance_id),
        host="h",
        pid=1,
        version="0",
        started_at=0,
        concurrency=4,
        streams=[STREAM],
        **counters,
    )


async def test_an_instance_is_alive_until_its_heartbeats_stop(fake_redis: FakeAsyncRedis) -> None:
    registry = Registry(fake_redis, KEYS, ttl_ms=200)
    discovery = Discovery(fake_redis, KEYS, ttl_ms=200)
    assert not await discovery.is_available("orders")
    await registry.heartbeat(instance("h-0.a1"))
    assert await discovery.is_available("orders")
    [alive] = await discovery.instances("orders")
    assert (alive.instance_id, alive.consumer, alive.streams) == ("h-0.a1", "h-0", [STREAM])
    await asyncio.sleep(0.25)
    assert not await discovery.is_available("orders")
    assert await registry.dead_ids("orders") == ["h-0.a1"]
    assert await registry.services() == {"orders": [STREAM]}


async def test_heartbeats_add_counters_to_the_service_totals(fake_redis: FakeAsyncRedis) -> None:
    registry = Registry(fake_redis, KEYS)
    await registry.heartbeat(instance("h-0.a"), {"handled": 5, "failed": 1})
    await registry.heartbeat(instance("h-1.b"), {"handled": 3})
    await registry.heartbeat(instance("h-0.a"), {"handled": 2})
    totals = await fake_redis.hgetall(KEYS.stats("orders"))
    assert totals == {"handled": "10", "failed": "1"}


async def test_only_one_caller_wins_the_death_of_an_instance(fake_redis: FakeAsyncRedis) -> None:
    registry = Registry(fake_redis, KEYS)
    await registry.heartbeat(instance("h-0.a"))
    results = await asyncio.gather(*(registry.claim_death("orders", "h-0.a") for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]


async def test_take_over_claims_every_pending_entry_of_the_dead(fake_redis: FakeAsyncRedis) -> None:
    await fake_redis.xgroup_create(STREAM, "orders", id="0", mkstream=True)
    for i in range(1_200):
        await fake_redis.xadd(STREAM, {"n": str(i)})
    await fake_redis.xreadgroup("orders", "dead", {STREAM: ">"}, count=1_100)
    await fake_redis.xreadgroup("orders", "alive", {STREAM: ">"}, count=100)

    assert (await take_over(fake_redis, [STREAM], "orders", "dead", "heir")).claimed == 1_100
    owners = {
        row["message_id"]: row["consumer"]
        for row in await fake_redis.xpending_range(STREAM, "orders", "-", "+", 2_000)
    }
    assert sorted(set(owners.values())) == ["alive", "heir"]
    assert list(owners.values()).count("heir") == 1_100


async def test_a_consumer_that_owns_entries_is_never_removed(fake_redis: FakeAsyncRedis) -> None:
    await fake_redis.xgroup_create(STREAM, "orders", id="0", mkstream=True)
    await fake_redis.xadd(STREAM, {"n": "1"})
    await fake_redis.xreadgroup("orders", "dead", {STREAM: ">"})
    assert await remove_if_idle(fake_redis, KEYS, [STREAM], "orders", "dead", "orders") == 0
    await take_over(fake_redis, [STREAM], "orders", "dead", "heir")
    assert await remove_if_idle(fake_redis, KEYS, [STREAM], "orders", "dead", "orders") == 1
    names = [c["name"] for c in await fake_redis.xinfo_consumers(STREAM, "orders")]
    assert names == ["heir"]


async def test_tidy_spares_leased_names_and_recent_consumers(fake_redis: FakeAsyncRedis) -> None:
    await fake_redis.xgroup_create(STREAM, "orders", id="0", mkstream=True)
    for name in ("old", "leased", "busy"):
        await fake_redis.xgroup_createconsumer(STREAM, "orders", name)
    await fake_redis.xadd(STREAM, {"n": "1"})
    await fake_redis.xreadgroup("orders", "busy", {STREAM: ">"})
    await fake_redis.set(KEYS.consumer_lease("orders", "leased"), "token")
    await asyncio.sleep(0.05)
    removed = await tidy_consumers(fake_redis, KEYS, [STREAM], "orders", "orders", idle_ms=10)
    assert removed == ["old"]


async def test_discovery_remembers_a_yes_briefly_and_never_a_no(fake_redis: FakeAsyncRedis) -> None:
    registry = Registry(fake_redis, KEYS, ttl_ms=5_000)
    discovery = Discovery(fake_redis, KEYS, cache_ms=200)
    assert not await discovery.is_available("orders")
    await registry.heartbeat(instance("h-0.a1"))
    assert await discovery.is_available("orders")  # a "no" was not remembered
    await registry.deregister("orders", "h-0.a1")
    assert await discovery.is_available("orders")  # the "yes" holds for cache_ms
    await asyncio.sleep(0.25)
    assert not await discovery.is_available("orders")
