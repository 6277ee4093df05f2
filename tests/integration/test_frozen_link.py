"""A worker whose link to Redis freezes (bytes held, nothing answered, the socket
open) carries on once the link passes again: nothing lost, nothing twice, no restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Message, Publisher
from streamcart.registry.clock import redis_now_ms
from streamcart.registry.instances import Registry
from tests.integration.faults import FaultProxy
from tests.integration.services import FAST_OPTIONS
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    wait_applied,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.standalone]  # the proxy fronts one server

FAST_COUNTER = "tests.integration.services:fast_counter"
BATCH = 300
# Cut off this long, as Redis sees it: longer than the claim timeout, short of the
# instance TTL (so no other instance would have taken its entries over).
FROZEN_MS = 3_000


def _increments(count: int, sleep_ms: int) -> list[Message]:
    data = {"name": "n", "sleep_ms": sleep_ms}
    return [Message(type="counter.increment", data=data, to="counter") for _ in range(count)]


async def test_a_frozen_link_heals_with_nothing_lost_and_no_restart(
    redis_url: str, real_redis: Redis, namespace: str, tmp_path: Path
) -> None:
    """A counter worker reaches Redis through a proxy; entries are added directly.
    The link freezes with handlers in flight and stays frozen until the worker's
    heartbeat is 3 s old, while more entries arrive; then it passes again. Every
    entry is applied exactly once by the same worker process."""
    assert FAST_OPTIONS.claim_timeout_ms < FROZEN_MS < FAST_OPTIONS.instance_ttl_ms
    keys = CounterKeys(namespace)
    publisher = Publisher(real_redis, Keys(namespace))
    registry = Registry(real_redis, Keys(namespace))
    with FaultProxy(redis_url) as proxy, Workers(proxy.url, namespace, tmp_path) as workers:
        worker = workers.start(FAST_COUNTER)
        await worker.consumer_name()
        [instance] = await wait_for(
            lambda: registry.alive("counter"), within=20, what="the worker registered"
        )
        assert instance.pid == worker.pid
        ids = await publisher.publish_many(_increments(BATCH, sleep_ms=20))

        async def under_way() -> bool:
            return 0 < int(await real_redis.hlen(keys.applied)) < BATCH

        await wait_for(under_way, within=20, what="handlers under way", context=workers.tails)
        proxy.freeze()
        ids += await publisher.publish_many(_increments(BATCH, sleep_ms=0))

        async def cut_off() -> bool:
            beats = Keys(namespace).instances("counter")
            [(_, beat)] = await real_redis.zrange(beats, 0, 0, withscores=True)
            return await redis_now_ms(real_redis) - float(beat) >= FROZEN_MS

        await wait_for(cut_off, within=20, what="the worker cut off for 3 s")
        proxy.passthrough()

        applied = await wait_applied(real_redis, keys, 2 * BATCH, within=60, context=workers.tails)
        assert worker.alive(), worker.tail()
        assert worker.log().count(" consuming ") == 1, "the worker restarted"
        [instance] = await registry.alive("counter")
        assert instance.pid == worker.pid
    assert_each_applied_once(applied, set(ids))
    assert await real_redis.hget(keys.counts, "n") == str(2 * BATCH)
    assert await real_redis.xlen(keys.dlq) == 0
