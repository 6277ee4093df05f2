"""The commit step on a real server: the scenarios of tests/unit/test_commit.py,
where a failing command inside a script or a MULTI keeps the writes before it."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from streamcart import Context, Service, ServiceOptions
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Publisher
from tests.unit.support import eventually, running
from tests.unit.test_commit import book_against_a_spoiled_key


@pytest.mark.parametrize("watched", [False, True], ids=["script", "watched"])
@pytest.mark.parametrize("spoil", ["type", "value"])
async def test_a_failing_write_is_never_applied_twice(
    real_redis: Redis, namespace: str, watched: bool, spoil: str
) -> None:
    keys = Keys(namespace)
    count, reason = await book_against_a_spoiled_key(real_redis, keys, watched=watched, spoil=spoil)
    assert count == 1
    spoiled = keys.state("ledger", "spoiled")
    assert reason.startswith(f"CommitError: write 3 (HINCRBY {spoiled})")
    if spoil == "type":
        assert reason.endswith("the key holds a string; nothing was written")
    else:
        assert "hash value is not an integer" in reason
        assert reason.endswith("so it is never applied again")


async def test_a_write_too_large_for_one_script_is_refused_before_anything_is_written(
    real_redis: Redis, namespace: str
) -> None:
    """Lua's unpack() fails past about 8,000 values, after the marker: such a
    commit would be marked done with its effects lost. It is refused whole."""
    keys = Keys(namespace)
    service = Service("bulky", options=ServiceOptions(block_ms=20, max_attempts=1))

    @service.on("bulky.load")
    async def load(msg: dict[str, int], ctx: Context) -> None:
        ctx.tx.incr(ctx.key("n"))
        ctx.tx.hset(ctx.key("big"), mapping={f"f{i}": i for i in range(msg["fields"])})

    await Publisher(real_redis, keys).publish("bulky.load", {"fields": 4_000}, to="bulky")
    await Publisher(real_redis, keys).publish("bulky.load", {"fields": 3}, to="bulky")
    async with running(service, real_redis, keys=keys):

        async def handled() -> bool:
            groups = await real_redis.xinfo_groups(keys.inbox("bulky"))
            return bool(groups) and groups[0]["lag"] == 0 and groups[0]["pending"] == 0

        await eventually(handled)
    [(_, letter)] = await real_redis.xrange(keys.dlq("bulky"))
    assert letter["dlq_error"].startswith("CommitError: write 2 (HSET ")
    assert "8002 arguments, over the 7000" in letter["dlq_error"]
    assert await real_redis.get(keys.state("bulky", "n")) == "1"  # the small one only
    assert await real_redis.hlen(keys.state("bulky", "big")) == 3
