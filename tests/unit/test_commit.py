"""The commit step on fakeredis: all or nothing, and never applied twice.

A Lua script (and a MULTI) keeps the writes made before a failing command,
so a commit whose third write fails must not leave its first writes to be
applied again by every retry. The same scenarios run on a real server in
tests/integration/test_commit.py.
"""

from __future__ import annotations

import msgspec
import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio import Redis

from streamcart import Context, Service, ServiceOptions
from streamcart.bus import deadletter
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Publisher
from tests.unit.support import KEYS, eventually, running

RETRYING = ServiceOptions(block_ms=20, retry_initial_ms=10, max_attempts=3, inline_attempts=2)


class Book(msgspec.Struct):
    watched: bool = False


def ledger(keys: Keys) -> Service:
    """Increments a counter, then writes to a key the test may have spoiled."""
    service = Service("ledger", options=RETRYING)

    @service.on("ledger.book")
    async def book(msg: Book, ctx: Context) -> None:
        if msg.watched:
            await ctx.watch(ctx.key("watched"))
        ctx.tx.incr(ctx.key("n"))
        ctx.tx.hset(ctx.key("totals"), "a", "1")
        ctx.tx.hincrby(ctx.key("spoiled"), "f", 1)
        ctx.publish("ledger.booked", {})

    return service


async def dead_letters(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    return [fields for _, fields in await redis.xrange(keys.dlq("ledger"))]


async def book_against_a_spoiled_key(
    redis: Redis, keys: Keys, *, watched: bool, spoil: str
) -> tuple[int, str]:
    """Book one message whose third write fails (``spoil``: ``type``, the key
    holds a string; ``value``, the hash field holds no integer), replay it once
    from the dead letters; returns the counter and the dead letter's reason."""
    spoiled = keys.state("ledger", "spoiled")
    if spoil == "type":
        await redis.set(spoiled, "not a hash")
    else:
        await redis.hset(spoiled, "f", "not a number")
    service = ledger(keys)
    await Publisher(redis, keys).publish("ledger.book", {"watched": watched}, to="ledger")
    async with running(service, redis, keys=keys, concurrency=4):

        async def dead_lettered() -> bool:
            return len(await dead_letters(redis, keys)) == 1

        await eventually(dead_lettered)
        [letter] = await dead_letters(redis, keys)
        # A replay must not apply it a second time either.
        await redis.delete(spoiled)
        assert await deadletter.replay(redis, keys, "ledger") == 1

        async def replay_handled() -> bool:
            groups = await redis.xinfo_groups(keys.inbox("ledger"))
            return groups[0]["lag"] == 0 and groups[0]["pending"] == 0

        await eventually(replay_handled)
    count = int(await redis.get(keys.state("ledger", "n")) or 0)
    return count, letter["dlq_error"]


@pytest.mark.parametrize("watched", [False, True], ids=["script", "watched"])
async def test_a_write_of_the_wrong_type_is_refused_before_anything_is_written(
    fake_redis: FakeAsyncRedis, watched: bool
) -> None:
    count, reason = await book_against_a_spoiled_key(
        fake_redis, KEYS, watched=watched, spoil="type"
    )
    # Nothing was written, so the replay (the key fixed) applies it once.
    assert count == 1
    spoiled = KEYS.state("ledger", "spoiled")
    assert reason.startswith(f"CommitError: write 3 (HINCRBY {spoiled}) needs a hash")
    assert "needs a hash or no key, and the key holds a string; nothing was written" in reason


@pytest.mark.parametrize("watched", [False, True], ids=["script", "watched"])
async def test_a_write_failing_after_the_checks_is_never_applied_twice(
    fake_redis: FakeAsyncRedis, watched: bool
) -> None:
    count, reason = await book_against_a_spoiled_key(
        fake_redis, KEYS, watched=watched, spoil="value"
    )
    assert count == 1  # not once per retry, nor again on the replay
    assert reason.startswith(f"CommitError: write 3 (HINCRBY {KEYS.state('ledger', 'spoiled')}): ")
    assert "hash value is not an integer" in reason
    assert reason.endswith("so it is never applied again")
