"""The commit step on a real server: the scenarios of tests/unit/test_commit.py,
where a failing command inside a script or a MULTI keeps the writes before it."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
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
