"""Replies written by some other producer: bytes that are not UTF-8 or data
that is not JSON fail that one call with a clear error; the client's reply
reader lives on and the next call is answered."""

from __future__ import annotations

import asyncio

import pytest
from fakeredis import FakeAsyncRedis

from streamcart.bus.rpc import RpcClient
from streamcart.errors import NotFoundError, StreamcartError
from tests.unit.support import KEYS

INBOX = KEYS.inbox("counter")
BAD_BYTE = b"\xff".decode("utf-8", "surrogateescape")


async def _answer(redis: FakeAsyncRedis, reply: dict[str, str]) -> None:
    """Answer the next request in the counter's inbox with ``reply``."""
    [(_, [(entry_id, request)])] = await redis.xread({INBOX: "0"}, count=1, block=5_000)
    await redis.xdel(INBOX, entry_id)
    await redis.xadd(request["reply_to"], {"correlation_id": request["correlation_id"], **reply})


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (
            {"status": "ok", "data": f'{{"name": "{BAD_BYTE}"}}'},
            'not JSON: \'{"name": "\\\\xff"}\'',
        ),
        ({"status": "ok", "data": "{oops"}, "data not JSON"),
        ({"status": "error", "code": "not_found", "message": f"no {BAD_BYTE}"}, "no \\xff"),
    ],
)
async def test_a_hostile_reply_fails_its_call_and_the_next_call_works(
    fake_redis: FakeAsyncRedis, reply: dict[str, str], says: str
) -> None:
    async with RpcClient(fake_redis, KEYS) as rpc:
        answer = asyncio.create_task(_answer(fake_redis, reply))
        with pytest.raises(StreamcartError) as failed:
            await rpc.call("counter.get", {"name": "a"}, timeout=5)
        await answer
        assert says in str(failed.value)
        if reply["status"] == "error":
            assert isinstance(failed.value, NotFoundError)

        answer = asyncio.create_task(_answer(fake_redis, {"status": "ok", "data": "7"}))
        assert await rpc.call("counter.get", {"name": "a"}, timeout=5) == 7
        await answer
