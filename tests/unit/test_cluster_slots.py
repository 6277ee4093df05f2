"""Every multi-key operation stays inside one Redis Cluster hash slot.

The test records each Lua script call (its KEYS) and each MULTI block (the
keys it WATCHes and writes) while a service does everything the runtime does:
commit effects with events, retry through delayed delivery, dead-letter,
replay, move due messages, trim, renew claims and lease consumer names.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis
from redis.asyncio.client import Pipeline, Redis
from redis.crc import key_slot

from streamcart import Context, ServiceOptions
from streamcart.bus import claims, commit, consumer, deadletter, delayed
from streamcart.bus import lease as lease_module
from streamcart.bus.commit import relay_stale
from streamcart.bus.lease import ConsumerLease
from streamcart.bus.publisher import Publisher
from streamcart.examples import counter
from tests.unit.support import KEYS, eventually, running

Operation = tuple[str, list[str]]


@pytest.fixture
def operations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Operation]]:
    """Records (name, keys) of every script call and MULTI block."""
    seen: list[Operation] = []

    def script_keys(args: tuple[Any, ...]) -> list[str]:
        return [str(k) for k in args[3 : 3 + int(args[2])]]

    def script_name(args: tuple[Any, ...]) -> str:
        """The script's SHA, also for an EVAL that sends its source."""
        if str(args[0]).upper() == "EVAL":
            return hashlib.sha1(str(args[1]).encode()).hexdigest()
        return str(args[1])

    def written_keys(args: tuple[Any, ...]) -> list[str]:
        if str(args[0]).upper() in ("EVALSHA", "EVAL"):
            return script_keys(args)
        return [str(args[1])] if len(args) > 1 else []

    redis_execute = Redis.execute_command

    async def on_redis(self: Redis, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVALSHA", "EVAL"):
            seen.append((script_name(args), script_keys(args)))
        return await redis_execute(self, *args, **options)

    queue = Pipeline.pipeline_execute_command

    def on_queue(self: Pipeline, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVALSHA", "EVAL"):
            seen.append((script_name(args), script_keys(args)))
        return queue(self, *args, **options)

    immediate = Pipeline.immediate_execute_command

    async def on_immediate(self: Pipeline, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() == "WATCH":
            self.__dict__.setdefault("_watched_keys", []).extend(str(k) for k in args[1:])
        return await immediate(self, *args, **options)

    execute = Pipeline.execute

    async def on_execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        if self.is_transaction and self.command_stack:
            written = [key for args, _ in self.command_stack for key in written_keys(args)]
            seen.append(("multi", self.__dict__.get("_watched_keys", []) + written))
        return await execute(self, raise_on_error)

    monkeypatch.setattr(Redis, "execute_command", on_redis)
    monkeypatch.setattr(Pipeline, "pipeline_execute_command", on_queue)
    monkeypatch.setattr(Pipeline, "immediate_execute_command", on_immediate)
    monkeypatch.setattr(Pipeline, "execute", on_execute)
    yield seen


async def test_every_multi_key_operation_stays_in_one_slot(
    fake_redis: FakeAsyncRedis, operations: list[Operation]
) -> None:
    options = ServiceOptions(
        block_ms=20, retry_initial_ms=10, max_attempts=3, claim_timeout_ms=150, stream_maxlen=1
    )
    svc = counter.build(options)
    release = asyncio.Event()

    @svc.on("counter.hold")
    async def hold(msg: dict[str, str], ctx: Context) -> None:
        await ctx.watch(ctx.key("held"))
        await release.wait()  # long enough for claim renewals
        ctx.tx.incr(ctx.key("held"))

    publisher = Publisher(fake_redis, KEYS)
    await publisher.publish("counter.increment", {"name": "a"}, to="counter")
    await publisher.publish("counter.fail", {"name": "x"}, to="counter")
    await publisher.publish("counter.hold", {}, to="counter")
    await publisher.publish("counter.increment", {"name": "later"}, to="counter", delay_ms=50)
    async with running(svc, fake_redis):

        async def dead_lettered() -> bool:
            return await fake_redis.xlen(KEYS.dlq("counter")) == 1

        await eventually(dead_lettered)
        await asyncio.sleep(0.3)  # renewals of the held entry, a trim pass
        release.set()
        await deadletter.replay(fake_redis, KEYS, "counter")
        await asyncio.sleep(0.1)
    await relay_stale(fake_redis, KEYS, "counter", older_than_ms=0)
    lease = ConsumerLease(fake_redis, KEYS, "counter", "token")
    await lease.acquire()
    await lease.renew()
    await _trim_now(fake_redis)

    every_script = {script.sha for script in SCRIPTS}
    assert {name for name, _ in operations} == every_script | {"multi"}
    assert any(name == "multi" and len(keys) >= 4 for name, keys in operations)
    for name, keys in operations:
        slots = {key_slot(key.encode()) for key in keys}
        assert len(slots) == 1, f"{name} spans slots: {keys}"


SCRIPTS = [
    commit._commit,
    delayed._schedule,
    delayed._move_due,
    consumer._trim,
    claims._renew,
    lease_module._lease,
]


async def _trim_now(redis: FakeAsyncRedis) -> None:
    await consumer._trim(redis, [KEYS.inbox("counter")], [1, 100])


def test_a_delayed_set_shares_its_stream_slot() -> None:
    for stream in ("sc:inbox:orders", "sc:events:order", "x"):
        assert key_slot(KEYS.delayed(stream).encode()) == key_slot(stream.encode())


def test_service_state_shares_one_slot_and_services_differ() -> None:
    slot = key_slot(KEYS.dedup_index("orders").encode())
    assert key_slot(KEYS.dedup_shard("orders", 17, 3).encode()) == slot
    assert key_slot(KEYS.outbox("orders").encode()) == slot
    assert key_slot(KEYS.state("orders", "order", "o1").encode()) == slot
    assert key_slot(KEYS.consumer_lease("orders", "h-0").encode()) == slot
