"""A worker that finds its consumer name taken (it was paused past its lease)
stops using it instead of sharing it with the process that took it."""

from __future__ import annotations

import asyncio

from fakeredis import FakeAsyncRedis

from streamcart.bus.lease import ConsumerLease
from streamcart.bus.worker import keep_lease
from tests.unit.support import KEYS, eventually


async def test_a_lost_lease_stops_the_worker(fake_redis: FakeAsyncRedis) -> None:
    lease = ConsumerLease(fake_redis, KEYS, "counter", "mine", lease_ms=300)
    name = await lease.acquire(host="h")
    other = ConsumerLease(fake_redis, KEYS, "counter", "theirs", lease_ms=300)
    await fake_redis.delete(KEYS.consumer_lease("counter", name))  # expired during the pause
    assert await other.acquire(host="h") == name
    stop = asyncio.Event()

    kept = await asyncio.wait_for(keep_lease(lease, stop), 5)

    assert kept is False
    assert stop.is_set()
    assert await fake_redis.get(KEYS.consumer_lease("counter", name)) == "theirs"


async def test_a_held_lease_is_renewed_until_the_stop(fake_redis: FakeAsyncRedis) -> None:
    lease = ConsumerLease(fake_redis, KEYS, "counter", "mine", lease_ms=300)
    name = await lease.acquire(host="h")
    renewals = 0
    renew = lease.renew

    async def counted() -> bool:
        nonlocal renewals
        renewals += 1
        return await renew()

    lease.renew = counted  # type: ignore[method-assign]
    stop = asyncio.Event()
    keeper = asyncio.create_task(keep_lease(lease, stop))

    async def outlived_the_lease() -> bool:
        return renewals >= 4  # renewed every third of the lease: over a lease's time

    await eventually(outlived_the_lease)
    assert await fake_redis.get(KEYS.consumer_lease("counter", name)) == "mine"
    stop.set()
    assert await asyncio.wait_for(keeper, 5) is True
