"""Error replies from a real server that a worker must survive (PITFALLS 18): a
refused acknowledgement, a stream deleted under a blocked read. Nothing is lost,
nothing applied twice, the worker keeps its process and says what it waits for.
A handler's own error reply reaches no client (PITFALLS 25): only its trace id does."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Publisher
from streamcart.telemetry import tracing
from streamcart.telemetry.export import build_tracer
from streamcart.telemetry.sampling import SamplingRule
from streamcart.telemetry.spans import SpanRecord
from streamcart.workers import cart
from streamcart.workers.users import signing_keys
from streamcart.workers.users.tokens import issue
from tests.integration.error_bodies import ErrorBodies, internals_in
from tests.integration.faults import acl_user
from tests.integration.support import (
    CounterKeys,
    Workers,
    assert_each_applied_once,
    cli,
    pending,
    run_process,
    running,
    wait_applied,
    wait_for,
)
from tests.integration.test_gateway import alive, gateway

FAST_COUNTER = "tests.integration.services:fast_counter"
# Heartbeats every 300 ms: health and status see a change within a second.
REGISTRY_COUNTER = "tests.integration.services:registry_counter"
ONE_TRY = ServiceOptions(block_ms=100, max_attempts=1, inline_attempts=1)


class Spans:
    """A span sink that keeps what it gets."""

    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []

    def export(self, spans: Sequence[SpanRecord]) -> None:
        self.spans.extend(spans)

    def shutdown(self) -> None:
        pass


async def test_acknowledgements_refused_with_noperm_are_waited_out_and_fail_health(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    """A worker whose XACKs are refused goes on handling, keeps its acks, and
    says so to `health` (exit 1) and `status`; once allowed, it flushes them:
    every message applied once, nothing pending, the same process."""
    keys = CounterKeys(namespace)
    async with acl_user(real_redis, redis_url) as user:
        await user.deny("xack")
        url = user.url
        with Workers(url, namespace, tmp_path) as workers:
            worker = workers.start(REGISTRY_COUNTER)
            await worker.consumer_name()
            publisher = Publisher(real_redis, Keys(namespace))
            ids = [
                await publisher.publish("counter.increment", {"name": "a"}, to="counter")
                for _ in range(20)
            ]

            async def unhealthy() -> str | None:
                code, _, err = await run_process(cli(url, namespace, "health", REGISTRY_COUNTER))
                return err if code == 1 and "NOPERM" in err else None

            err = await wait_for(unhealthy, within=30, what="health to fail", context=workers.tails)
            assert "acknowledging" in (err or "")
            code, out, _ = await run_process(cli(redis_url, namespace, "status"))
            assert code == 0 and "NOPERM" in out, out
            assert await pending(real_redis, keys.inbox, keys.group) == len(ids)

            await user.allow("xack")
            applied = await wait_applied(real_redis, keys, len(ids), within=30)
            assert_each_applied_once(applied, set(ids))

            said: list[str] = []

            async def healthy() -> bool:
                code, _, err = await run_process(cli(url, namespace, "health", REGISTRY_COUNTER))
                said[:] = [err]
                return code == 0

            await wait_for(healthy, within=30, what="health to pass", context=lambda: "".join(said))
            assert worker.alive(), worker.tail()


async def test_a_stream_deleted_under_a_blocked_read_is_recreated_without_a_restart(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    keys = CounterKeys(namespace)
    publisher = Publisher(real_redis, Keys(namespace))
    with Workers(redis_url, namespace, tmp_path) as workers:
        worker = workers.start(FAST_COUNTER)
        await worker.consumer_name()
        first = await publisher.publish("counter.increment", {"name": "a"}, to="counter")
        await wait_applied(real_redis, keys, 1, within=30, context=workers.tails)

        await real_redis.delete(keys.inbox)  # UNBLOCKED for the worker's XREADGROUP

        async def group_back() -> bool:
            groups = (
                await real_redis.xinfo_groups(keys.inbox)
                if await real_redis.exists(keys.inbox)
                else []
            )
            return any(group["name"] == keys.group for group in groups)

        await wait_for(group_back, within=30, what="the group created again", context=workers.tails)
        later = [
            await publisher.publish("counter.increment", {"name": "a"}, to="counter")
            for _ in range(5)
        ]
        applied = await wait_applied(real_redis, keys, 6, within=30, context=workers.tails)
        assert_each_applied_once(applied, {first, *later})
        assert worker.alive(), worker.tail()
        # UNBLOCKED if the delete caught it blocked, NOGROUP if between reads.
        assert "the stream was deleted" in worker.log() or "is gone" in worker.log()


async def test_a_handler_failing_on_wrongtype_tells_the_client_only_its_trace_id(
    real_redis: Redis,
    namespace: str,
    error_bodies: ErrorBodies,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The cart's key holds a string, so ``cart.get`` fails with Redis's WRONGTYPE
    reply: the client gets a 503 with a generic message and the trace id, and
    the worker's log line and its span's exception event have the detail."""
    keys = Keys(namespace)
    await real_redis.set(keys.state("cart", "cart", "u1"), "not a hash")
    sink = Spans()
    tracer = build_tracer("cart", [sink], SamplingRule(ratio=1.0))
    tracing.install(tracer)
    try:
        token, _ = issue(signing_keys.from_environment().current, "u1", "user")
        consumer = Consumer(cart.build(ONE_TRY), real_redis, name="c1", keys=keys)
        async with (
            running(consumer),
            alive(real_redis, keys, "cart"),
            gateway(real_redis, keys) as client,
        ):
            with caplog.at_level(logging.ERROR):
                response = await client.get(
                    "/api/cart", headers={"Authorization": f"Bearer {token}"}
                )
        assert tracer.flush()
    finally:
        tracing.install(None)
        tracer.shutdown()

    assert response.status_code == 503, response.text
    trace_id = response.headers["x-trace-id"]
    error = response.json()["error"]
    assert error["code"] == "unavailable" and error["trace_id"] == trace_id
    assert trace_id in error["message"], error
    assert internals_in(response.text) == [] and "WRONGTYPE" not in response.text
    assert [status for _, status, _ in error_bodies.seen] == [503]

    [logged] = [r for r in caplog.records if "WRONGTYPE" in r.getMessage()]
    assert trace_id in logged.getMessage() and "ResponseError" in logged.getMessage()
    assert logged.exc_info is not None
    raised = [
        event.attributes
        for span in sink.spans
        if span.trace_id == trace_id and (span.name, span.kind) == ("cart.get", "server")
        for event in span.events
        if event.name == "exception"
    ]
    assert [(a["exception.type"], "WRONGTYPE" in a["exception.message"]) for a in raised] == [
        ("ResponseError", True)
    ]
    assert "Traceback" in raised[0]["exception.stacktrace"]


@pytest.mark.parametrize(
    "body",
    [
        '{"error": {"code": "unavailable", "message": "ResponseError: WRONGTYPE Operation"}}',
        '{"error": {"message": "NOPERM User x has no permissions to run the \'xack\' command"}}',
        '{"error": {"message": "OOM command not allowed when used memory > maxmemory"}}',
        '{"error": {"message": "Traceback (most recent call last):"}}',
        '{"error": {"message": "at /work/src/streamcart/bus/dispatch.py"}}',
        '{"error": {"message": "redis does not answer: TimeoutError"}}',
        '{"error": {"message": "Error 111 connecting to 127.0.0.1:6399. Connection refused."}}',
    ],
)
def test_the_body_check_finds_internals(body: str) -> None:
    assert internals_in(body)


@pytest.mark.parametrize(
    "message",
    [
        "no product with sku 'OOM-1'",
        "the users service has no live instance",
        "internal error in the cart service (trace 4bf92f3577b34da6a3ce929d0e0e4736); "
        "its log has the details",
        "Validation failed for POST /api/users/register: Expected `str`, got `int` - at `$.email`",
    ],
)
def test_the_body_check_lets_client_messages_pass(message: str) -> None:
    assert internals_in(message) == []
