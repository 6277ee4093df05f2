"""Error replies that pass: a consumer waits them out, says what it waits for,
and goes on working, instead of exiting (and every pool child with it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis
from redis._parsers.base import BaseParser

from streamcart import ServiceOptions
from streamcart.bus.consumer import Consumer
from streamcart.bus.publisher import Publisher
from streamcart.examples import counter
from tests.unit.support import KEYS, eventually, running

FAST = ServiceOptions(block_ms=20, retry_initial_ms=10, max_attempts=3, claim_timeout_ms=500)
REPLIES = [
    "READONLY You can't write against a read only replica.",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or FUNCTION KILL.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "LOADING Redis is loading the dataset in memory",
    "UNBLOCKED the stream key no longer exists",
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
    "NOPERM User worker has no permissions to run the 'xreadgroup' command",
]


class Refusing:
    """A client that answers one command with an error reply until released."""

    def __init__(self, redis: FakeAsyncRedis, command: str, reply: str) -> None:
        self._redis = redis
        self._command = command
        self._error = BaseParser.parse_error(reply)
        self.refused = 0
        self.released = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._redis, name)
        if name != self._command:
            return attribute

        async def refuse(*args: Any, **kwargs: Any) -> Any:
            if not self.released:
                self.refused += 1
                raise self._error
            return await attribute(*args, **kwargs)

        return refuse


@pytest.mark.parametrize("reply", REPLIES, ids=[r.split()[0] for r in REPLIES])
async def test_a_read_refused_with_an_error_reply_is_waited_out(
    fake_redis: FakeAsyncRedis, reply: str
) -> None:
    client = Refusing(fake_redis, "xreadgroup", reply)
    await Publisher(fake_redis, KEYS).publish("counter.increment", {"name": "a"}, to="counter")
    async with running(counter.build(FAST), client) as consumer:  # type: ignore[arg-type]

        async def waiting() -> bool:
            return client.refused >= 3 and "reading" in (consumer.waiting_for or "")

        await eventually(waiting)
        assert reply.split()[0] in (consumer.waiting_for or "")
        client.released = True

        async def applied() -> bool:
            counts = await fake_redis.hgetall(KEYS.state("counter", "counts"))
            return counts.get("a") == "1"

        await eventually(applied)
        await eventually(lambda: _none(consumer.waiting_for))


async def _none(value: object) -> bool:
    return value is None


async def test_a_stop_while_groups_cannot_be_created_ends_the_consumer(
    fake_redis: FakeAsyncRedis,
) -> None:
    """SIGTERM to a worker whose server is read-only from the start: it stops
    at once instead of waiting for the server (and its pool's SIGKILL)."""
    client = Refusing(fake_redis, "xgroup_create", REPLIES[0])
    consumer = Consumer(counter.build(FAST), client, name="c1", keys=KEYS)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def waiting() -> bool:
        return "creating groups" in (consumer.waiting_for or "")

    await eventually(waiting)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert client.refused >= 1
