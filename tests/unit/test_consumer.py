"""The consumer runtime on fakeredis: handling, effects, failures, recovery."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from fakeredis import FakeAsyncRedis
from redis.exceptions import ResponseError

from streamcart import Context, PermanentError, Service, ServiceOptions
from streamcart.bus import deadletter, delayed
from streamcart.bus.commit import relay_stale
from streamcart.bus.publisher import Publisher
from streamcart.errors import NotFoundError
from streamcart.examples import counter
from tests.unit.support import KEYS, eventually, running

FAST = ServiceOptions(block_ms=20, retry_initial_ms=10, max_attempts=3, claim_timeout_ms=500)
INBOX = KEYS.inbox("counter")


class Job(msgspec.Struct):
    name: str


async def counts(redis: FakeAsyncRedis) -> dict[str, str]:
    return await redis.hgetall(KEYS.state("counter", "counts"))


async def pending(redis: FakeAsyncRedis, stream: str = INBOX, group: str = "counter") -> int:
    """Entries pending in the group; -1 while the group does not exist yet."""
    try:
        return int((await redis.xpending(stream, group))["pending"])
    except ResponseError:
        return -1


async def dead(redis: FakeAsyncRedis, service: str = "counter") -> list[dict[str, str]]:
    return [fields for _, fields in await redis.xrange(KEYS.dlq(service))]


async def test_effects_and_events_are_committed_and_the_entry_acked(
    fake_redis: FakeAsyncRedis,
) -> None:
    await Publisher(fake_redis, KEYS).publish(
        "counter.increment", {"name": "a", "by": 2}, to="counter"
    )
    async with running(counter.build(FAST), fake_redis):

        async def applied() -> bool:
            return (await counts(fake_redis)).get("a") == "2"

        await eventually(applied)
        await eventually(lambda: _is_zero(pending(fake_redis)))
    [(_, event)] = await fake_redis.xrange(KEYS.events("counter"))
    assert event["type"] == "counter.incremented"
    assert json.loads(event["data"]) == {"name": "a", "by": 2}
    assert await fake_redis.xlen(KEYS.outbox("counter")) == 0


async def _is_zero(value: asyncio.Future[int] | object) -> bool:
    return await value == 0  # type: ignore[misc]


async def test_an_entry_stays_pending_while_its_handler_runs(fake_redis: FakeAsyncRedis) -> None:
    release = asyncio.Event()
    svc = Service("counter", options=FAST)

    @svc.on("counter.slow")
    async def slow(msg: Job, ctx: Context) -> None:
        await release.wait()

    await Publisher(fake_redis, KEYS).publish("counter.slow", {"name": "a"}, to="counter")
    async with running(svc, fake_redis):

        async def in_flight() -> bool:
            return await pending(fake_redis) == 1

        await eventually(in_flight)
        await asyncio.sleep(0.1)
        assert await pending(fake_redis) == 1  # acknowledged only after the handler
        release.set()
        await eventually(lambda: _is_zero(pending(fake_redis)))


async def test_a_message_delivered_twice_applies_its_effects_once(
    fake_redis: FakeAsyncRedis,
) -> None:
    publisher = Publisher(fake_redis, KEYS)
    for _ in range(3):  # the same message id, as after a producer retry or a redelivery
        await publisher.publish("counter.increment", {"name": "a"}, to="counter", message_id="m-1")
    await publisher.publish("counter.increment", {"name": "b"}, to="counter")
    async with running(counter.build(FAST), fake_redis):

        async def all_handled() -> bool:
            return "b" in await counts(fake_redis) and await pending(fake_redis) == 0

        await eventually(all_handled)
    assert await counts(fake_redis) == {"a": "1", "b": "1"}
    assert await fake_redis.xlen(KEYS.events("counter")) == 2


async def test_malformed_entries_are_dead_lettered_and_the_worker_goes_on(
    fake_redis: FakeAsyncRedis,
) -> None:
    bad = [
        {"data": "{}"},
        {"type": "counter.increment"},
        {"type": "counter.increment", "data": "{oops"},
        {"type": "counter.increment", "data": '{"name": 5}'},
        {"type": "counter.nope", "data": "{}"},
    ]
    ids = [await fake_redis.xadd(INBOX, fields) for fields in bad]
    await Publisher(fake_redis, KEYS).publish("counter.increment", {"name": "ok"}, to="counter")
    async with running(counter.build(FAST), fake_redis):

        async def done() -> bool:
            return len(await dead(fake_redis)) == 5 and await pending(fake_redis) == 0

        await eventually(done)
        assert await counts(fake_redis) == {"ok": "1"}
    letters = await dead(fake_redis)
    errors = [letter["dlq_error"] for letter in letters]
    assert errors[0].startswith("MalformedEntryError: entry has no `type`")
    assert errors[1].startswith(
        "MalformedEntryError: entry of type 'counter.increment' has no `data`"
    )
    assert errors[2].startswith("MalformedEntryError: data is not valid JSON")
    assert errors[3].startswith("SchemaError: data does not match Increment")
    assert errors[4].startswith(
        "UnknownTypeError: service 'counter' has no handler for 'counter.nope'"
    )
    for letter, entry_id, original in zip(letters, ids, bad, strict=True):
        assert {k: letter[k] for k in original} == original  # original fields unchanged
        assert letter["dlq_id"] == entry_id
        assert letter["dlq_stream"] == INBOX and letter["dlq_service"] == "counter"
        assert int(letter["dlq_at"]) > 0


async def test_an_unknown_event_type_on_a_topic_is_skipped(fake_redis: FakeAsyncRedis) -> None:
    svc = Service("audit", options=FAST)
    seen: list[str] = []

    @svc.on("order.placed")
    async def placed(msg: dict[str, str], ctx: Context) -> None:
        seen.append(ctx.message.id)

    publisher = Publisher(fake_redis, KEYS)
    await publisher.publish("order.shipped", {}, message_id="skip-me")
    await publisher.publish("order.placed", {}, message_id="handle-me")
    async with running(svc, fake_redis):

        async def both_acked() -> bool:
            return bool(seen) and await pending(fake_redis, KEYS.events("order"), "audit") == 0

        await eventually(both_acked)
    assert seen == ["handle-me"]
    assert await dead(fake_redis, "audit") == []


async def test_a_failing_message_is_retried_then_dead_lettered_with_its_attempts(
    fake_redis: FakeAsyncRedis,
) -> None:
    options = ServiceOptions(block_ms=20, retry_initial_ms=10, max_attempts=4, inline_attempts=2)
    await Publisher(fake_redis, KEYS).publish("counter.fail", {"name": "x"}, to="counter")
    async with running(counter.build(options), fake_redis) as consumer:

        async def dead_lettered() -> bool:
            return len(await dead(fake_redis)) == 1

        await eventually(dead_lettered)
    [letter] = await dead(fake_redis)
    assert letter["dlq_attempts"] == "4"
    assert letter["dlq_error"] == "TransientError: counter 'x' is broken until it is fixed"
    # 2 tries in place, then one redelivery through the inbox with 2 more tries
    assert consumer.stats.retried == 1
    assert consumer.stats.failed == 4


async def test_replay_after_a_fix_handles_the_message(fake_redis: FakeAsyncRedis) -> None:
    await Publisher(fake_redis, KEYS).publish("counter.fail", {"name": "x"}, to="counter")
    async with running(counter.build(FAST), fake_redis):

        async def dead_lettered() -> bool:
            return len(await dead(fake_redis)) == 1

        await eventually(dead_lettered)
        await fake_redis.hset(KEYS.state("counter", "fixed"), "x", "1")
        assert await deadletter.replay(fake_redis, KEYS, "counter") == 1

        async def handled() -> bool:
            return (await counts(fake_redis)).get("x") == "1"

        await eventually(handled)
    assert await dead(fake_redis) == []


async def test_a_permanent_error_is_dead_lettered_without_retry(fake_redis: FakeAsyncRedis) -> None:
    calls = 0
    svc = Service("counter", options=FAST)

    @svc.on("counter.reject")
    async def reject(msg: Job, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        raise PermanentError("this order can never be valid")

    await Publisher(fake_redis, KEYS).publish("counter.reject", {"name": "x"}, to="counter")
    async with running(svc, fake_redis):

        async def dead_lettered() -> bool:
            return len(await dead(fake_redis)) == 1

        await eventually(dead_lettered)
    assert calls == 1
    assert (await dead(fake_redis))[0]["dlq_attempts"] == "1"


async def test_a_restarted_consumer_first_finishes_its_own_pending(
    fake_redis: FakeAsyncRedis,
) -> None:
    svc = counter.build(FAST)
    await fake_redis.xgroup_create(INBOX, "counter", id="0", mkstream=True)
    await Publisher(fake_redis, KEYS).publish("counter.increment", {"name": "a"}, to="counter")
    # A predecessor named c1 read the entry and died before acknowledging it.
    await fake_redis.xreadgroup("counter", "c1", {INBOX: ">"}, count=10)
    assert await pending(fake_redis) == 1
    async with running(svc, fake_redis, name="c1") as consumer:
        await asyncio.wait_for(consumer.ready.wait(), 5)

        async def handled() -> bool:
            return (await counts(fake_redis)).get("a") == "1"

        await eventually(handled, within=0.4)  # well before any claim timeout
        await eventually(lambda: _is_zero(pending(fake_redis)))


async def test_a_message_delivered_too_often_is_dead_lettered(fake_redis: FakeAsyncRedis) -> None:
    options = ServiceOptions(block_ms=20, max_deliveries=3)
    await fake_redis.xgroup_create(INBOX, "counter", id="0", mkstream=True)
    await Publisher(fake_redis, KEYS).publish("counter.increment", {"name": "a"}, to="counter")
    [[_, [(entry_id, _)]]] = await fake_redis.xreadgroup("counter", "c1", {INBOX: ">"})
    for _ in range(3):  # as if three workers crashed on it in turn
        await fake_redis.xclaim(INBOX, "counter", "c1", 0, [entry_id])
    async with running(counter.build(options), fake_redis, name="c1"):

        async def dead_lettered() -> bool:
            return len(await dead(fake_redis)) == 1

        await eventually(dead_lettered)
    [letter] = await dead(fake_redis)
    assert letter["dlq_error"].startswith("MaxDeliveriesExceeded: delivered 5 times")
    assert await counts(fake_redis) == {}


async def test_a_watched_key_changed_mid_handler_reruns_the_handler(
    fake_redis: FakeAsyncRedis,
) -> None:
    svc = Service("stock", options=FAST)
    runs = 0

    @svc.on("stock.take")
    async def take(msg: Job, ctx: Context) -> None:
        nonlocal runs
        runs += 1
        key = ctx.key("level")
        await ctx.watch(key)
        level = int(await ctx.redis.get(key) or 0)
        if runs == 1:  # someone else writes between our read and our commit
            await ctx.redis.set(key, level + 10)
        ctx.tx.set(key, level - 1)

    await fake_redis.set(KEYS.state("stock", "level"), 5)
    await Publisher(fake_redis, KEYS).publish("stock.take", {"name": "x"}, to="stock")
    async with running(svc, fake_redis):

        async def committed() -> bool:
            return await fake_redis.get(KEYS.state("stock", "level")) == "14"

        await eventually(committed)
    assert runs == 2


async def test_a_request_whose_commit_keeps_conflicting_still_gets_its_answer(
    fake_redis: FakeAsyncRedis,
) -> None:
    """Neighbours committing first three times in a row (a busy cart, say) cost
    the caller quick retries, not an error."""
    # The default attempts: 2 quick tries for a real failure, 5 in all.
    svc = Service("stock", options=ServiceOptions(block_ms=20, retry_initial_ms=10))
    runs = 0

    @svc.on("stock.take")
    async def take(msg: Job, ctx: Context) -> int:
        nonlocal runs
        runs += 1
        key = ctx.key("level")
        await ctx.watch(key)
        level = int(await ctx.redis.get(key) or 0)
        if runs <= 3:
            await ctx.redis.incr(key)  # a neighbour commits first
        ctx.tx.set(key, level - 1)
        return level - 1

    await fake_redis.set(KEYS.state("stock", "level"), 5)
    async with running(svc, fake_redis) as consumer:
        left = await consumer.rpc.call("stock.take", {"name": "x"}, timeout=5)
        await consumer.rpc.aclose()
    assert (runs, left) == (4, 7)
    assert await dead(fake_redis, "stock") == []


async def test_writes_outside_the_service_slot_are_refused(fake_redis: FakeAsyncRedis) -> None:
    svc = Service("counter", options=ServiceOptions(block_ms=20, max_attempts=1))

    @svc.on("counter.stray")
    async def stray(msg: Job, ctx: Context) -> None:
        ctx.tx.set("elsewhere", "1")

    await Publisher(fake_redis, KEYS).publish("counter.stray", {"name": "x"}, to="counter")
    async with running(svc, fake_redis):

        async def dead_lettered() -> bool:
            return len(await dead(fake_redis)) == 1

        await eventually(dead_lettered)
    assert "must use keys of the service's own slot" in (await dead(fake_redis))[0]["dlq_error"]
    assert await fake_redis.get("elsewhere") is None


async def test_watching_a_key_outside_the_service_slot_is_refused(
    fake_redis: FakeAsyncRedis,
) -> None:
    """On a standalone server the transaction would work; on a cluster it could not."""
    svc = Service("counter", options=ServiceOptions(block_ms=20, max_attempts=1))

    @svc.on("counter.stray")
    async def stray(msg: Job, ctx: Context) -> None:
        await ctx.watch(ctx.key("mine"), "elsewhere")
        ctx.tx.set(ctx.key("mine"), "1")

    await Publisher(fake_redis, KEYS).publish("counter.stray", {"name": "x"}, to="counter")
    async with running(svc, fake_redis):

        async def dead_lettered() -> bool:
            return len(await dead(fake_redis)) == 1

        await eventually(dead_lettered)
    error = (await dead(fake_redis))[0]["dlq_error"]
    assert "watch('elsewhere'): watched keys must be keys of the service's own slot" in error
    assert await fake_redis.get(KEYS.state("counter", "mine")) is None


async def test_outbox_entries_left_by_a_crash_are_relayed(fake_redis: FakeAsyncRedis) -> None:
    outbox = KEYS.outbox("counter")
    fields = {
        "type": "counter.incremented",
        "data": "{}",
        "id": "m1",
        "outbox_stream": "t:events:x",
    }
    await fake_redis.xadd(outbox, fields, id="1-0")  # committed long ago, never relayed
    assert await relay_stale(fake_redis, KEYS, "counter") == 1
    [(_, event)] = await fake_redis.xrange("t:events:x")
    assert event == {"type": "counter.incremented", "data": "{}", "id": "m1"}
    assert await fake_redis.xlen(outbox) == 0


async def test_concurrency_bounds_running_handlers(fake_redis: FakeAsyncRedis) -> None:
    svc = Service("counter", options=FAST)
    running_now = peak = done = 0

    @svc.on("counter.work")
    async def work(msg: Job, ctx: Context) -> None:
        nonlocal running_now, peak, done
        running_now += 1
        peak = max(peak, running_now)
        await asyncio.sleep(0.01)
        running_now -= 1
        done += 1

    publisher = Publisher(fake_redis, KEYS)
    for i in range(40):
        await publisher.publish("counter.work", {"name": str(i)}, to="counter")
    async with running(svc, fake_redis, concurrency=3):

        async def all_done() -> bool:
            return done == 40

        await eventually(all_done)
    assert peak == 3


async def test_stopping_finishes_running_handlers_and_leaves_the_rest_pending(
    fake_redis: FakeAsyncRedis,
) -> None:
    svc = Service("counter", options=FAST)
    started: list[str] = []
    finished: list[str] = []

    @svc.on("counter.work")
    async def work(msg: Job, ctx: Context) -> None:
        started.append(msg.name)
        await asyncio.sleep(0.2)
        finished.append(msg.name)

    publisher = Publisher(fake_redis, KEYS)
    for i in range(10):
        await publisher.publish("counter.work", {"name": str(i)}, to="counter")
    async with running(svc, fake_redis, concurrency=2):

        async def two_started() -> bool:
            return len(started) == 2

        await eventually(two_started)
    assert finished == started  # the running ones completed during shutdown
    assert await pending(fake_redis) == 8  # the rest are left for another worker


async def test_a_handlers_own_os_error_is_retried_like_any_failure(
    fake_redis: FakeAsyncRedis,
) -> None:
    options = ServiceOptions(block_ms=20, retry_initial_ms=10, max_attempts=3, inline_attempts=3)
    svc = Service("counter", options=options)
    calls = 0

    @svc.on("counter.fetch")
    async def fetch(msg: Job, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("the provider is down")  # an OSError, not Redis
        ctx.tx.hincrby(ctx.key("counts"), msg.name, 1)

    await Publisher(fake_redis, KEYS).publish("counter.fetch", {"name": "p"}, to="counter")
    async with running(svc, fake_redis) as consumer:

        async def handled() -> bool:
            return (await counts(fake_redis)).get("p") == "1"

        await eventually(handled)
    assert calls == 3
    assert consumer.stats.failed == 2 and consumer.stats.handled == 1


class Recorder:
    """An observer that records what it hears; ``broken`` makes every hook raise."""

    def __init__(self, broken: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.broken = broken

    def _record(self, event: str, message_type: str) -> None:
        if self.broken:
            raise RuntimeError("observer bug")
        self.events.append((event, message_type))

    def handled(self, service: str, message_type: str, seconds: float) -> None:
        assert seconds >= 0
        self._record("handled", message_type)

    def failed(self, service: str, message_type: str) -> None:
        self._record("failed", message_type)

    def retried(self, service: str, message_type: str) -> None:
        self._record("retried", message_type)

    def dead_lettered(self, service: str, message_type: str) -> None:
        self._record("dead_lettered", message_type)


async def test_observers_hear_every_outcome_and_a_broken_one_changes_nothing(
    fake_redis: FakeAsyncRedis,
) -> None:
    from streamcart.bus.consumer import Consumer

    options = ServiceOptions(block_ms=20, retry_initial_ms=10, max_attempts=2, inline_attempts=1)
    recorder = Recorder()
    consumer = Consumer(
        counter.build(options),
        fake_redis,
        name="c1",
        keys=KEYS,
        observers=[Recorder(broken=True), recorder],
    )
    publisher = Publisher(fake_redis, KEYS)
    await publisher.publish("counter.increment", {"name": "a"}, to="counter")
    await publisher.publish("counter.fail", {"name": "x"}, to="counter")
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def dead_lettered() -> bool:
        return len(await dead(fake_redis)) == 1

    await eventually(dead_lettered)
    stop.set()
    await task
    assert sorted(recorder.events) == [
        ("dead_lettered", "counter.fail"),
        ("failed", "counter.fail"),
        ("failed", "counter.fail"),
        ("handled", "counter.increment"),
        ("retried", "counter.fail"),
    ]


async def test_a_reply_that_cannot_be_written_holds_up_no_other_reply_or_ack(
    fake_redis: FakeAsyncRedis,
) -> None:
    # A request injected by hand may name any key as its reply stream.
    await fake_redis.set("t:not-a-stream", "x")
    await fake_redis.xadd(
        INBOX,
        {"type": "counter.get", "data": '{"name": "a"}', "reply_to": "t:not-a-stream",
         "correlation_id": "c1"},
    )  # fmt: skip
    async with running(counter.build(FAST), fake_redis) as consumer:
        await eventually(lambda: _is_zero(pending(fake_redis)))
        with pytest.raises(NotFoundError, match="no counter named 'a'"):
            await consumer.rpc.call("counter.get", {"name": "a"}, timeout=2)
        await consumer.rpc.aclose()
    assert await fake_redis.get("t:not-a-stream") == "x"
    assert await pending(fake_redis) == 0


async def test_a_reply_to_a_caller_that_is_gone_creates_no_stream(
    fake_redis: FakeAsyncRedis,
) -> None:
    await fake_redis.xadd(
        INBOX,
        {"type": "counter.get", "data": '{"name": "a"}', "reply_to": "t:reply:gone",
         "correlation_id": "c1"},
    )  # fmt: skip
    async with running(counter.build(FAST), fake_redis):
        await eventually(lambda: _is_zero(pending(fake_redis)))
    assert not await fake_redis.exists("t:reply:gone")


async def test_a_delayed_send_leaves_only_when_its_handler_commits(
    fake_redis: FakeAsyncRedis,
) -> None:
    service = Service("timer", options=FAST)
    runs = 0

    @service.on("timer.start")
    async def start(msg: dict[str, str], ctx: Context) -> None:
        nonlocal runs
        runs += 1
        ctx.send_later("timer", "timer.ring", {"n": runs}, delay_ms=50)
        if runs == 1:
            raise RuntimeError("crash before the commit")  # the send must not leave

    rung: list[int] = []

    @service.on("timer.ring")
    async def ring(msg: dict[str, int], ctx: Context) -> None:
        rung.append(msg["n"])

    await Publisher(fake_redis, KEYS).publish("timer.start", {}, to="timer")
    async with running(service, fake_redis):
        await eventually(lambda: _is_true(bool(rung)))
        await asyncio.sleep(0.2)
    assert (runs, rung) == (2, [2])
    assert await fake_redis.xlen(KEYS.outbox("timer")) == 0


async def test_a_delayed_send_left_in_the_outbox_is_scheduled_by_the_sweeper(
    fake_redis: FakeAsyncRedis,
) -> None:
    fields = {"type": "timer.ring", "data": "{}", "id": "m1",
              "outbox_stream": KEYS.inbox("timer"), "outbox_delay_ms": "60000"}  # fmt: skip
    await fake_redis.xadd(KEYS.outbox("timer"), fields, id="1-0")
    assert await relay_stale(fake_redis, KEYS, "timer") == 1
    assert await delayed.pending_delayed(fake_redis, KEYS, KEYS.inbox("timer")) == 1
    assert await fake_redis.xlen(KEYS.inbox("timer")) == 0


async def _is_true(value: bool) -> bool:
    return value


async def test_a_committed_message_past_its_delivery_cap_is_a_duplicate_not_a_dead_letter(
    fake_redis: FakeAsyncRedis,
) -> None:
    """Its effects were committed, its ack lost, and crashes delivered it over
    and over: once back, it is acknowledged as done, never dead-lettered."""
    fields = {"type": "counter.increment", "data": '{"name": "a"}', "id": "m1"}
    await fake_redis.xadd(INBOX, fields)
    async with running(counter.build(FAST), fake_redis):
        await eventually(lambda: _is_zero(pending(fake_redis)))
    # The same message again (a relay's second copy), delivered past the cap to "ghost".
    await fake_redis.xadd(INBOX, fields)
    await fake_redis.xreadgroup("counter", "ghost", {INBOX: ">"})
    [(entry_id, _)] = await fake_redis.xrevrange(INBOX, count=1)
    for _ in range(FAST.max_deliveries + 1):
        await fake_redis.xclaim(INBOX, "counter", "ghost", 0, [entry_id])

    async with running(counter.build(FAST), fake_redis, name="ghost"):
        await eventually(lambda: _is_zero(pending(fake_redis)))
    assert await dead(fake_redis) == []
    assert (await counts(fake_redis)) == {"a": "1"}
