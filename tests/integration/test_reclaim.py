"""Taking over the entries of a dead consumer, on a real server.

The reclaim pass carries the XAUTOCLAIM cursor to the end of the pending list,
so it takes every entry idle past the claim timeout (and only those) however
long the list; entries deleted from the stream while pending are dead-lettered
as ``trimmed``; and a group is created at id 0, so messages published before
any consumer started are not skipped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from streamcart.bus import claims
from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Message, Publisher
from streamcart.examples import counter
from tests.integration.support import (
    CounterKeys,
    assert_each_applied_once,
    pending,
    pending_by_consumer,
    running,
    wait_applied,
    wait_for,
)


@dataclass(frozen=True)
class AutoclaimCall:
    cursor: str
    next_cursor: str
    claimed: list[str]
    deleted: list[str]


def _increments(count: int) -> list[Message]:
    return [
        Message(type="counter.increment", data={"name": f"r{i % 3}"}, to="counter")
        for i in range(count)
    ]


async def _take_as_dead(redis: Redis, keys: CounterKeys, count: int) -> list[str]:
    """Deliver ``count`` new entries to consumer "dead", which never acknowledges."""
    reply = await redis.xreadgroup(keys.group, "dead", {keys.inbox: ">"}, count=count)
    return [entry_id for entry_id, _ in reply[0][1]]


async def _wait_idle(redis: Redis, keys: CounterKeys, count: int, idle_ms: int) -> None:
    """Wait until ``count`` pending entries have been idle for ``idle_ms``."""

    async def idle_enough() -> bool:
        rows = await redis.xpending_range(
            keys.inbox, keys.group, "-", "+", count + 1_000, idle=idle_ms
        )
        return len(rows) >= count

    await wait_for(idle_enough, within=idle_ms / 1000 + 10, what=f"{count} idle entries")


async def test_reclaim_pass_carries_the_cursor_and_takes_only_idle_entries(
    namespace: str, real_redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of 500 entries held by a dead consumer, 300 are past the claim timeout:
    one reclaim pass, made of several XAUTOCLAIM calls chained by their cursor,
    takes exactly those 300; a later pass takes the other 200."""
    keys = CounterKeys(namespace)
    options = ServiceOptions(claim_timeout_ms=2_000, batch_size=50, block_ms=100)
    publisher = Publisher(real_redis, Keys(namespace))
    await real_redis.xgroup_create(keys.inbox, keys.group, id="0", mkstream=True)
    ids = await publisher.publish_many(_increments(300))
    old = await _take_as_dead(real_redis, keys, 300)
    await _wait_idle(real_redis, keys, 300, options.claim_timeout_ms)
    ids += await publisher.publish_many(_increments(200))
    young = await _take_as_dead(real_redis, keys, 200)
    assert (len(old), len(young)) == (300, 200)

    calls: list[AutoclaimCall] = []
    real_autoclaim = claims.autoclaim

    async def recording_autoclaim(
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        min_idle_ms: int,
        cursor: str,
        count: int,
    ) -> tuple[str, list[claims.Entry], list[str]]:
        reply = await real_autoclaim(
            redis, stream, group, consumer, min_idle_ms=min_idle_ms, cursor=cursor, count=count
        )
        claimed = [entry_id for entry_id, _ in reply[1]]
        calls.append(AutoclaimCall(cursor, reply[0], claimed, reply[2]))
        return reply

    monkeypatch.setattr(claims, "autoclaim", recording_autoclaim)
    consumer = Consumer(counter.build(options), real_redis, name="live", keys=Keys(namespace))
    async with running(consumer):
        applied = await wait_applied(real_redis, keys, 500, within=30)

    assert_each_applied_once(applied, set(ids))
    passes: list[list[AutoclaimCall]] = []
    for call in calls:
        if call.cursor == "0-0":
            passes.append([])
        passes[-1].append(call)
    busy = [p for p in passes if any(call.claimed for call in p)]
    first = busy[0]
    assert sorted(i for call in first for i in call.claimed) == sorted(old)
    assert len(first) >= 300 // options.batch_size, "one call cannot have claimed 300"
    for before, after in itertools.pairwise(first):
        assert after.cursor == before.next_cursor, "the cursor was not carried"
    assert first[-1].next_cursor == "0-0", "the pass stopped before the end of the list"
    assert sorted(i for p in busy[1:] for call in p for i in call.claimed) == sorted(young)
    assert await pending(real_redis, keys.inbox, keys.group) == 0


async def test_entries_deleted_while_pending_are_dead_lettered_as_trimmed(
    namespace: str, real_redis: Redis
) -> None:
    """Pending entries XDEL'd from the stream come back from XAUTOCLAIM as
    deleted ids: each is dead-lettered with a ``trimmed`` reason and leaves the
    pending list; the surviving entries are applied."""
    keys = CounterKeys(namespace)
    options = ServiceOptions(claim_timeout_ms=500, batch_size=10, block_ms=100)
    await real_redis.xgroup_create(keys.inbox, keys.group, id="0", mkstream=True)
    ids = await Publisher(real_redis, Keys(namespace)).publish_many(_increments(30))
    taken = await _take_as_dead(real_redis, keys, 30)
    deleted = taken[::3]
    assert await real_redis.xdel(keys.inbox, *deleted) == len(deleted)
    await _wait_idle(real_redis, keys, 30, options.claim_timeout_ms)

    consumer = Consumer(counter.build(options), real_redis, name="live", keys=Keys(namespace))
    async with running(consumer):
        applied = await wait_applied(real_redis, keys, 20, within=20)

        async def dead_lettered() -> bool:
            return int(await real_redis.xlen(keys.dlq)) >= len(deleted)

        await wait_for(dead_lettered, within=10, what="the deleted entries dead-lettered")

    assert_each_applied_once(applied, {ids[i] for i in range(30) if i % 3})
    dead = await real_redis.xrange(keys.dlq)
    assert sorted(fields["dlq_id"] for _, fields in dead) == sorted(deleted)
    for _, fields in dead:
        assert fields["dlq_error"].startswith("trimmed"), fields
        assert fields["dlq_stream"] == keys.inbox
    assert await pending(real_redis, keys.inbox, keys.group) == 0
    assert await pending_by_consumer(real_redis, keys.inbox, keys.group) == {}


async def test_messages_published_before_the_group_existed_are_consumed(
    namespace: str, real_redis: Redis
) -> None:
    """Messages already in a stream when the first consumer starts are handled:
    the group is created at id 0, not at ``$``."""
    keys = CounterKeys(namespace)
    ids = await Publisher(real_redis, Keys(namespace)).publish_many(_increments(25))
    assert not await real_redis.xinfo_groups(keys.inbox)

    options = ServiceOptions(block_ms=100)
    consumer = Consumer(counter.build(options), real_redis, name="first", keys=Keys(namespace))
    async with running(consumer):
        applied = await wait_applied(real_redis, keys, 25, within=20)

    assert_each_applied_once(applied, set(ids))
    assert await real_redis.hgetall(keys.counts) == {"r0": "9", "r1": "8", "r2": "8"}
