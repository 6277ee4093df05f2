"""The client :func:`~streamcart.bus.connection.connect` opens, on a link that freezes.

Deadlines cancel redis-py commands in flight. That is only safe because
redis-py drops a connection whose command was cancelled: kept in the pool, it
would hand the cancelled command's late reply to the next command.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from streamcart.bus.connection import connect
from tests.integration.faults import FaultProxy

pytestmark = pytest.mark.standalone  # the proxy stands in front of one server

CANCEL_AFTER_S = 0.3


async def test_a_command_cancelled_on_a_frozen_link_leaves_no_late_reply_behind(
    redis_url: str, real_redis: Redis, namespace: str
) -> None:
    first, second = f"{namespace}:first", f"{namespace}:second"
    await real_redis.mset({first: "1", second: "2"})
    with FaultProxy(redis_url) as proxy:
        client = connect(proxy.url)
        try:
            assert await client.get(second) == "2"  # one pooled connection, warm
            proxy.freeze()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(CANCEL_AFTER_S):
                    await client.get(first)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(CANCEL_AFTER_S):
                    async with client.pipeline(transaction=True) as pipe:
                        await pipe.get(first).incr(f"{namespace}:n").execute()
            proxy.passthrough()
            # The held requests reach the server now and are answered, on
            # connections the client has dropped: each command reads its own reply.
            for _ in range(3):
                assert await client.get(second) == "2"
                async with client.pipeline(transaction=True) as pipe:
                    assert await pipe.get(second).get(second).execute() == ["2", "2"]
        finally:
            await client.aclose()
