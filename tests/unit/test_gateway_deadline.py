"""The request deadline: a request still unanswered at it is a 504; an answer
already on its way is not cut off; the request's calls see the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar, get
from litestar.response import Stream

from streamcart.gateway.errors import error_handlers
from streamcart.gateway.middleware.deadline import DeadlineMiddleware, current_deadline_ms

DEADLINE_S = 0.2


@get("/hang")
async def hang() -> None:
    await asyncio.Event().wait()


@get("/deadline")
async def deadline() -> dict[str, int | None]:
    return {"deadline_ms": current_deadline_ms()}


@get("/slow-stream")
async def slow_stream() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first "
        await asyncio.sleep(DEADLINE_S * 2)  # past the deadline, once the answer has begun
        yield b"second"

    return Stream(chunks())


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Litestar(
        route_handlers=[hang, deadline, slow_stream],
        middleware=[DeadlineMiddleware(DEADLINE_S)],
        exception_handlers=error_handlers(),
        logging_config=None,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


async def test_a_request_unanswered_at_its_deadline_is_a_504(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await client.get("/hang")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert time.monotonic() - started < DEADLINE_S * 10


async def test_the_request_sees_its_deadline(client: httpx.AsyncClient) -> None:
    before_ms = time.time() * 1000
    seen = (await client.get("/deadline")).json()["deadline_ms"]
    assert before_ms + DEADLINE_S * 1000 - 50 <= seen <= time.time() * 1000 + DEADLINE_S * 1000
    assert current_deadline_ms() is None  # outside a request there is none


async def test_an_answer_already_on_its_way_is_not_cut_off(client: httpx.AsyncClient) -> None:
    response = await client.get("/slow-stream")
    assert response.status_code == 200
    assert response.text == "first second"


def test_a_deadline_must_be_above_zero() -> None:
    with pytest.raises(ValueError, match="above 0 s"):
        DeadlineMiddleware(0)
