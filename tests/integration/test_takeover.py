"""A dead instance is noticed by its missed heartbeats and its work taken over."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Message, Publisher
from tests.integration.services import REGISTRY_OPTIONS
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    pending_by_consumer,
    wait_applied,
    wait_for,
)

SPEC = "tests.integration.services:registry_counter"
TOTAL = 2_000


@pytest.mark.chaos
async def test_a_killed_instances_entries_are_taken_over_long_before_the_claim_timeout(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """SIGKILL one of two workers while it holds pending entries: the survivor
    notices the silence within the instance TTL, claims everything the dead
    consumer held, publishes ``system.instance_down`` and removes the dead
    consumer from the group; the claim timeout (120 s) never comes into it."""
    keys = CounterKeys(namespace)
    messages = [
        Message(type="counter.increment", data={"name": "n", "sleep_ms": 5}, to="counter")
        for _ in range(TOTAL)
    ]
    with Workers(redis_url, namespace, tmp_path) as workers:
        victim = workers.start(SPEC)
        victim_name = await victim.consumer_name()
        survivor = workers.start(SPEC)
        await survivor.consumer_name()
        ids = await Publisher(real_redis, Keys(namespace)).publish_many(messages)

        async def victim_holds_entries() -> bool:
            held = await pending_by_consumer(real_redis, keys.inbox, keys.group)
            return held.get(victim_name, 0) >= 5

        await wait_for(victim_holds_entries, within=30, what="entries in flight at the victim")
        victim.send(signal.SIGKILL)
        killed_at = time.monotonic()

        async def taken_over() -> bool:
            held = await pending_by_consumer(real_redis, keys.inbox, keys.group)
            return victim_name not in held

        await wait_for(taken_over, within=30, what="the takeover", context=workers.tails)
        takeover_s = time.monotonic() - killed_at
        applied = await wait_applied(real_redis, keys, TOTAL, within=60, context=workers.tails)
        assert survivor.alive()

    print(
        f"\ntakeover of a SIGKILLed instance's entries: {takeover_s:.2f}s "
        f"(instance TTL {REGISTRY_OPTIONS.instance_ttl_ms} ms)"
    )
    assert takeover_s < REGISTRY_OPTIONS.claim_timeout_ms / 1000
    assert_each_applied_once(applied, set(ids))
    consumers = {c["name"] for c in await real_redis.xinfo_consumers(keys.inbox, keys.group)}
    assert victim_name not in consumers  # removed once it owned nothing
    downs = [
        json.loads(fields["data"])
        for _, fields in await real_redis.xrange(f"{namespace}:events:system")
        if fields["type"] == "system.instance_down"
    ]
    dead = [d for d in downs if d["reason"] == "missed heartbeats"]
    assert len(dead) == 1 and dead[0]["consumer"] == victim_name and dead[0]["taken_over"] > 0
    ups = [
        fields
        for _, fields in await real_redis.xrange(f"{namespace}:events:system")
        if fields["type"] == "system.instance_up"
    ]
    assert len(ups) == 2
