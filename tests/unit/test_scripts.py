"""The Lua scripts: safe trimming, claim renewal, consumer-name leases."""

from __future__ import annotations

from fakeredis import FakeAsyncRedis

from streamcart.bus import claims
from streamcart.bus.consumer import _trim
from streamcart.bus.lease import ConsumerLease
from tests.unit.support import KEYS

STREAM = "t:events:order"


async def _fill(redis: FakeAsyncRedis, count: int) -> list[str]:
    return [await redis.xadd(STREAM, {"n": str(i)}, id=f"{i + 1}-0") for i in range(count)]


async def test_trim_never_drops_entries_a_group_still_needs(fake_redis: FakeAsyncRedis) -> None:
    ids = await _fill(fake_redis, 100)
    for group in ("slow", "fast"):
        await fake_redis.xgroup_create(STREAM, group, id="0")
    await fake_redis.xreadgroup("slow", "c", {STREAM: ">"}, count=30)
    await fake_redis.xack(STREAM, "slow", *ids[:20])  # 21..30 pending, 31.. undelivered
    await fake_redis.xreadgroup("fast", "c", {STREAM: ">"}, count=100)
    await fake_redis.xack(STREAM, "fast", *ids)

    await _trim(fake_redis, [STREAM], [10, 10_000])
    remaining = [entry_id for entry_id, _ in await fake_redis.xrange(STREAM)]
    assert remaining == ids[20:]  # the oldest pending entry of the slow group is kept

    await fake_redis.xack(STREAM, "slow", *ids[20:30])
    await fake_redis.xreadgroup("slow", "c", {STREAM: ">"}, count=100)
    await fake_redis.xack(STREAM, "slow", *ids[30:])
    await _trim(fake_redis, [STREAM], [10, 10_000])
    assert await fake_redis.xlen(STREAM) == 10  # nobody needs more: down to the bound


async def test_trim_keeps_entries_no_group_has_read(fake_redis: FakeAsyncRedis) -> None:
    await _fill(fake_redis, 50)
    await fake_redis.xgroup_create(STREAM, "late", id="0")
    await _trim(fake_redis, [STREAM], [5, 10_000])
    assert await fake_redis.xlen(STREAM) == 50


async def test_renew_keeps_own_entries_and_reports_ones_taken_over(
    fake_redis: FakeAsyncRedis,
) -> None:
    ids = await _fill(fake_redis, 3)
    await fake_redis.xgroup_create(STREAM, "g", id="0")
    await fake_redis.xreadgroup("g", "me", {STREAM: ">"}, count=3)
    await fake_redis.xclaim(STREAM, "g", "other", 0, [ids[2]])  # someone took the third

    lost = await claims.renew(fake_redis, "g", "me", {STREAM: ids})
    assert lost == [(STREAM, ids[2])]
    owners = {
        row["message_id"]: row["consumer"]
        for row in await fake_redis.xpending_range(STREAM, "g", min="-", max="+", count=10)
    }
    assert owners == {ids[0]: "me", ids[1]: "me", ids[2]: "other"}  # not taken back


async def test_a_lease_gives_each_process_its_own_stable_name(fake_redis: FakeAsyncRedis) -> None:
    first = ConsumerLease(fake_redis, KEYS, "orders", "pool-a:0")
    second = ConsumerLease(fake_redis, KEYS, "orders", "pool-a:1")
    assert await first.acquire(host="h") == "h-0"
    assert await second.acquire(host="h") == "h-1"
    restarted = ConsumerLease(fake_redis, KEYS, "orders", "pool-a:1")
    assert await restarted.acquire(host="h") == "h-1"  # same slot token: its old name back
    await first.release()
    newcomer = ConsumerLease(fake_redis, KEYS, "orders", "pool-b:0")
    assert await newcomer.acquire(host="h") == "h-0"  # freed names are reused
    assert await first.renew() is False  # and the old holder knows it lost it


async def test_renew_ignores_entries_already_acknowledged(fake_redis: FakeAsyncRedis) -> None:
    ids = await _fill(fake_redis, 2)
    await fake_redis.xgroup_create(STREAM, "g", id="0")
    await fake_redis.xreadgroup("g", "me", {STREAM: ">"}, count=2)
    await fake_redis.xack(STREAM, "g", ids[0])  # acknowledged while the renewal was queued
    assert await claims.renew(fake_redis, "g", "me", {STREAM: ids}) == []
    assert (await fake_redis.xpending(STREAM, "g"))["pending"] == 1  # nothing re-created
