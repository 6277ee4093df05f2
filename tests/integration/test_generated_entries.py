"""Two thousand generated entries, hostile and valid mixed, written with a plain
client into a live pool's inbox and a topic it reads: every entry is handled
exactly once or dead-lettered with a reason, no process dies, and the entries
that follow are handled."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    cli,
    pending,
    pool_workers,
    raw_client,
    wait_for,
)

SPEC = "tests.integration.services:listener"
TOTAL = 2_000


def _hostile(rng: random.Random, n: int) -> dict[bytes, bytes]:
    """One entry that must be dead-lettered, of a kind drawn at random."""
    kind = rng.randrange(9)
    good_type = rng.choice([b"counter.increment", b"probe.seen"])
    if kind == 0:
        return {b"type": good_type, b"data": rng.randbytes(rng.randrange(1, 40)) + b"\xff"}
    if kind == 1:
        return {b"type": good_type, b"data": b"{}", rng.randbytes(8) + b"\xc3(": b"v"}
    if kind == 2:
        return {b"type": good_type, b"data": b"{" * rng.randrange(1, 20)}
    if kind == 3:
        return {b"type": good_type, b"data": json.dumps({"n": "x", "name": 7}).encode()}
    if kind == 4:
        return {b"data": b'{"name": "a"}'}  # no type
    if kind == 5:
        return {b"type": good_type}  # no data
    if kind == 6:
        fields = {f"f{i}".encode(): b"v" for i in range(rng.randrange(300, 3_000))}
        return {b"type": good_type, b"data": b"{}", **fields}
    if kind == 7:
        depth = rng.randrange(65, 400)
        return {b"type": good_type, b"data": b'{"name": ' + b"[" * depth + b"]" * depth + b"}"}
    return {b"type": good_type, b"data": b'{"name": "a"}', b"attempt": b"not a number"}


def _valid(stream_kind: str, n: int) -> dict[bytes, bytes]:
    if stream_kind == "inbox":
        return {b"type": b"counter.increment", b"data": b'{"name": "g"}', b"id": f"v{n}".encode()}
    return {b"type": b"probe.seen", b"data": json.dumps({"n": n}).encode(), b"id": f"v{n}".encode()}


@pytest.mark.chaos
async def test_generated_entries_are_each_handled_once_or_dead_lettered(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    keys = CounterKeys(namespace)
    topic = f"{namespace}:events:probe"
    rng = random.Random(20261203)
    writer = raw_client(redis_url)
    try:
        with Workers(redis_url, namespace, tmp_path) as workers:
            await _run(workers, writer, real_redis, redis_url, namespace, keys, topic, rng)
    finally:
        await writer.aclose()


async def _run(
    workers: Workers,
    writer: Redis,
    real_redis: Redis,
    redis_url: str,
    namespace: str,
    keys: CounterKeys,
    topic: str,
    rng: random.Random,
) -> None:
    pool = workers.start_command(
        cli(redis_url, namespace, "worker", SPEC, "-p", "2", "-c", "16"), "pool"
    )
    await wait_for(lambda: _two(pool_workers(pool.pid)), within=60, what="two pool children")
    children = pool_workers(pool.pid)
    await wait_for(
        lambda: _groups_exist(real_redis, [keys.inbox, topic], keys.group),
        within=60,
        what="the groups",
    )
    valid: set[str] = set()
    hostile = 0
    for n in range(TOTAL):
        stream = rng.choice([keys.inbox, topic])
        if rng.random() < 0.5:
            fields = _valid("inbox" if stream == keys.inbox else "topic", n)
            valid.add(f"v{n}")
        else:
            fields = _hostile(rng, n)
            hostile += 1
        await writer.xadd(stream, fields)  # type: ignore[arg-type]
    following = {f"after{n}" for n in range(20)}
    for message_id in sorted(following):
        await real_redis.xadd(
            keys.inbox, {"type": "counter.increment", "data": '{"name": "g"}', "id": message_id}
        )

    async def settled() -> dict[str, str] | None:
        applied: dict[str, str] = await real_redis.hgetall(keys.applied)
        if len(applied) < len(valid) + len(following):
            return None
        if await pending(real_redis, keys.inbox, keys.group):
            return None
        if await pending(real_redis, topic, keys.group):
            return None
        if await real_redis.xlen(keys.dlq) < hostile:
            return None
        return applied

    applied = await wait_for(
        settled, within=120, what="every entry handled or dead", context=workers.tails
    )
    assert applied is not None
    assert_each_applied_once(applied, valid | following)
    dead = [fields for _, fields in await real_redis.xrange(keys.dlq)]
    assert len(dead) == hostile
    assert all(letter.get("dlq_error") for letter in dead)
    assert pool.alive(), pool.tail()
    assert pool_workers(pool.pid) == children, "a pool child died"


async def _two(children: set[int]) -> bool:
    return len(children) == 2


async def _groups_exist(redis: Redis, streams: list[str], group: str) -> bool:
    for stream in streams:
        if not await redis.exists(stream):
            return False
        if group not in {g["name"] for g in await redis.xinfo_groups(stream)}:
            return False
    return True
