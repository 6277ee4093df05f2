"""Replies written by some other producer: bytes that are not UTF-8 or data
that is not JSON fail that one call with a clear error; the client's reply
reader lives on and the next call is answered. Error replies of a real
responder tell the caller what was meant for it, and of a failure of the
service's own only that it happened."""

from __future__ import annotations

import asyncio

import pytest
from fakeredis import FakeAsyncRedis

from streamcart.bus.rpc import RpcClient
from streamcart.errors import (
    InvalidError,
    NotFoundError,
    RemoteError,
    StreamcartError,
    UnavailableError,
)
from streamcart.examples import counter
from tests.unit.support import KEYS, running
from tests.unit.test_consumer import FAST

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


async def test_an_expected_error_keeps_its_message_and_an_unexpected_one_says_only_that(
    fake_redis: FakeAsyncRedis,
) -> None:
    """The counts key holds a string: ``counter.get`` fails on Redis's WRONGTYPE
    (retried, then answered as unavailable) and ``counter.increment``'s commit is
    refused (for good: an internal error); neither reply quotes Redis or names a
    class or a key. A missing counter and a bad request keep their messages."""
    async with running(counter.build(FAST), fake_redis), RpcClient(fake_redis, KEYS) as rpc:
        with pytest.raises(NotFoundError, match="no counter named 'a'"):
            await rpc.call("counter.get", {"name": "a"}, timeout=5)
        with pytest.raises(InvalidError, match="Expected `str`, got `int`"):
            await rpc.call("counter.get", {"name": 1}, timeout=5)
        await fake_redis.set(KEYS.state("counter", "counts"), "not a hash")
        with pytest.raises(UnavailableError) as unavailable:
            await rpc.call("counter.get", {"name": "a"}, timeout=5)
        with pytest.raises(RemoteError) as refused:
            await rpc.call("counter.increment", {"name": "a"}, timeout=5)
    assert refused.value.code == "internal"
    for error in (unavailable.value, refused.value):
        text = str(error)
        assert "internal error in the counter service" in text
        for inside in ("WRONGTYPE", "Error", "counts", "string", "hash"):
            assert inside not in text, text
