"""Traces on a real server: across gateway and worker processes, and an exporter
that never holds a handler up.

Processes export to the namespace's trace stream (the default exporter); the
tests read it back with the same queries ``streamcart trace`` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from redis.asyncio import Redis

from streamcart.bus import deadletter
from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Message, Publisher
from streamcart.examples import counter
from streamcart.telemetry import tracing
from streamcart.telemetry.export import RedisSpanExporter, build_tracer
from streamcart.telemetry.sampling import SamplingRule
from streamcart.telemetry.spans import SpanRecord, from_fields
from streamcart.telemetry.traces import load_trace
from tests.integration.services import FAST_OPTIONS
from tests.integration.support import Workers, cli, free_port, run_process, running, wait_for

TRACED = {"OTEL_TRACES_SAMPLER": "parentbased_always_on", "OTEL_BSP_SCHEDULE_DELAY": "100"}
ALICE = {"email": "alice@example.com", "password": "s3cret-pass", "name": "Alice"}
START_S = 30.0


async def _spans(redis: Redis, keys: Keys, trace_id: str, *, at_least: int) -> list[SpanRecord]:
    async def enough() -> list[SpanRecord]:
        spans = await load_trace(redis, keys, trace_id)
        return spans if len(spans) >= at_least else []

    return await wait_for(enough, within=20, what=f"{at_least} spans of trace {trace_id}")


async def _live(redis: Redis, keys: Keys, *services: str) -> bool:
    for service in services:
        if not await redis.zcard(keys.instances(service)):
            return False
    return True


async def test_a_request_through_the_gateway_is_one_trace_across_services(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    port = free_port()
    with Workers(redis_url, namespace, tmp_path, env=TRACED) as workers:
        workers.start("users", concurrency=4)
        workers.start("tests.integration.services:welcome", concurrency=4)
        workers.start("tests.integration.services:fast_counter", concurrency=4)
        gateway_argv = cli(redis_url, namespace, "gateway", "--port", str(port))
        workers.start_command(gateway_argv, "gateway")
        await wait_for(
            lambda: _live(real_redis, keys, "users", "welcome", "counter"),
            within=START_S, what="the workers to register", context=workers.tails,
        )  # fmt: skip
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def gateway_ready() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get("/readyz")).status_code == 200
                return False

            await wait_for(gateway_ready, within=START_S, what="the gateway", context=workers.tails)
            response = await client.post("/api/users/register", json=ALICE)
        assert response.status_code == 201, response.text
        trace_id = response.headers["x-trace-id"]
        spans = await _spans(real_redis, keys, trace_id, at_least=10)

    by_id = {span.span_id: span for span in spans}
    named = {(span.service, span.name, span.kind): span for span in spans}
    assert len(named) == len(spans), f"a span appears twice: {sorted(named)}"
    request = ("gateway", "POST /api/users/register", "server")
    # child -> parent: the call, the event it publishes, and what the event causes.
    tree = {
        ("gateway", "users.register", "client"): request,
        ("users", "users.register", "server"): ("gateway", "users.register", "client"),
        ("users", "send user.registered", "producer"): ("users", "users.register", "server"),
        ("welcome", "process user.registered", "consumer"):
            ("users", "send user.registered", "producer"),
        ("welcome", "counter.noop", "client"): ("welcome", "process user.registered", "consumer"),
        ("counter", "counter.noop", "server"): ("welcome", "counter.noop", "client"),
        ("welcome", "send counter.increment", "producer"):
            ("welcome", "process user.registered", "consumer"),
        ("counter", "process counter.increment", "consumer"):
            ("welcome", "send counter.increment", "producer"),
        ("counter", "send counter.incremented", "producer"):
            ("counter", "process counter.increment", "consumer"),
    }  # fmt: skip
    assert set(named) == {request, *tree}
    root = named[request]
    assert root.parent_id == "" and root.attributes["http.response.status_code"] == 201
    for child, parent in tree.items():
        assert by_id[named[child].parent_id] is named[parent], f"{child} is not under {parent}"
        assert named[child].start_ns >= named[parent].start_ns - 5_000_000  # hosts' clocks
    # The handler calls first and sends afterwards; the call ends before the send.
    call = named[("welcome", "counter.noop", "client")]
    send = named[("welcome", "send counter.increment", "producer")]
    assert call.end_ns <= send.start_ns
    assert all(span.status != "error" for span in spans)

    # What a user sees of it: the list names the request, the tree holds every span.
    code, listed, err = await run_process(cli(redis_url, namespace, "trace", "list", "--json"))
    assert code == 0, err
    [summary] = json.loads(listed)
    assert (summary["trace_id"], summary["root_name"]) == (trace_id, "POST /api/users/register")
    assert summary["span_count"] == len(spans)
    code, shown, err = await run_process(cli(redis_url, namespace, "trace", "show", trace_id))
    assert code == 0, err
    assert trace_id in shown and "POST /api/users/register" in shown
    assert sum(line.count("send counter.incremented") for line in shown.splitlines()) == 1


async def test_an_entry_injected_without_context_starts_a_trace(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    with Workers(redis_url, namespace, tmp_path, env=TRACED) as workers:
        workers.start("tests.integration.services:fast_counter", concurrency=4)
        # What `redis-cli XADD <ns>:inbox:counter * type counter.increment data {...}` writes.
        message_id = uuid.uuid4().hex
        await real_redis.xadd(
            keys.inbox("counter"),
            {"type": "counter.increment", "data": '{"name": "cli"}', "id": message_id},
        )

        async def root_span() -> SpanRecord | None:
            for _, fields in await real_redis.xrange(keys.traces()):
                span = from_fields(fields)
                if span is not None and span.attributes.get("streamcart.message.id") == message_id:
                    return span
            return None

        root = await wait_for(root_span, within=START_S, what="the entry's span",
                              context=workers.tails)  # fmt: skip
        spans = await _spans(real_redis, keys, root.trace_id, at_least=2)
    assert root.parent_id == "" and root.kind == "consumer"
    assert {span.name for span in spans} == {
        "process counter.increment",
        "send counter.incremented",
    }


async def test_retries_a_dead_letter_and_its_replay_show_on_the_trace(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    with Workers(redis_url, namespace, tmp_path, env=TRACED) as workers:
        workers.start("tests.integration.services:fast_counter", concurrency=4)
        await Publisher(real_redis, keys).publish(
            "counter.fail", {"name": "x"}, to="counter",
            extra={"traceparent": f"00-{trace_id}-{parent_id}-01"},
        )  # fmt: skip

        async def dead_lettered() -> bool:
            return await real_redis.xlen(keys.dlq("counter")) == 1

        await wait_for(dead_lettered, within=START_S, what="the dead letter", context=workers.tails)
        await real_redis.hset(keys.state("counter", "fixed"), "x", "1")
        assert await deadletter.replay(real_redis, keys, "counter") == 1
        spans = await _spans(real_redis, keys, trace_id, at_least=3)

    handled = sorted(spans, key=lambda span: span.start_ns)
    assert [span.name for span in handled] == ["process counter.fail"] * 3
    assert {span.parent_id for span in handled} == {parent_id}
    first, redelivered, replayed = handled
    assert [event.name for event in first.events] == [
        "attempt_failed", "attempt_failed", "retry_scheduled",
    ]  # fmt: skip
    assert [event.name for event in redelivered.events] == ["attempt_failed", "dead_lettered"]
    assert redelivered.status == "error" and "broken" in redelivered.status_message
    assert redelivered.attributes["streamcart.attempt"] == FAST_OPTIONS.max_attempts
    assert replayed.status != "error" and replayed.events == []


async def test_sampling_off_records_no_span(
    redis_url: str, namespace: str, real_redis: Redis, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    off = {**TRACED, "OTEL_TRACES_SAMPLER": "always_off"}
    with Workers(redis_url, namespace, tmp_path, env=off) as workers:
        worker = workers.start("tests.integration.services:fast_counter", concurrency=4)
        sampled = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
        publisher = Publisher(real_redis, keys)
        await publisher.publish("counter.increment", {"name": "n"}, to="counter")
        await publisher.publish(
            "counter.increment", {"name": "n"}, to="counter", extra={"traceparent": sampled}
        )

        async def both_applied() -> bool:
            return await real_redis.hget(keys.state("counter", "counts"), "n") == "2"

        await wait_for(both_applied, within=START_S, what="both increments", context=workers.tails)
        # A graceful stop exports whatever the span buffer holds: after it, nothing is late.
        worker.send(signal.SIGTERM)
        assert await worker.wait_exit(within=30) == 0, worker.tail()
    assert await real_redis.xlen(keys.traces()) == 0
    [(_, event), _] = await real_redis.xrange(keys.events("counter"))
    assert "traceparent" not in event


# -- the exporter never holds a handler up -------------------------------------------------
@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


async def _handle_all_while_exporting_to(
    real_redis: Redis, keys: Keys, exporter: RedisSpanExporter, count: int
) -> float:
    """Seconds the counter takes for ``count`` increments, every one traced."""
    tracer = build_tracer("counter", [exporter], SamplingRule(1.0), delay_ms=50, max_queue=256)
    tracing.install(tracer)
    try:
        await Publisher(real_redis, keys).publish_many(
            Message(type="counter.increment", data={"name": "load"}, to="counter")
            for _ in range(count)
        )
        started = time.monotonic()
        async with running(_consumer(real_redis, keys)):

            async def all_applied() -> bool:
                value = await real_redis.hget(keys.state("counter", "counts"), "load")
                return value == str(count)

            await wait_for(all_applied, within=60, what=f"{count} increments")
        return time.monotonic() - started
    finally:
        tracing.install(None)
        await asyncio.to_thread(tracer.shutdown)


def _consumer(redis: Redis, keys: Keys) -> Consumer:
    return Consumer(counter.build(FAST_OPTIONS), redis, name="c1", keys=keys, concurrency=16)


async def test_an_exporter_whose_redis_never_answers_holds_no_handler_up(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    keys = Keys(namespace)
    with black_hole() as url:
        exporter = RedisSpanExporter(url, keys, timeout_s=3.0)
        seconds = await _handle_all_while_exporting_to(real_redis, keys, exporter, 1_000)
    # Each export waits 3 s for an answer that never comes; the handlers do not.
    assert seconds < 3.0, f"1,000 handlers took {seconds:.1f} s behind a hung exporter"
    assert exporter.dropped > 0
    assert await real_redis.xlen(keys.dlq("counter")) == 0


async def test_an_exporter_whose_writes_fail_fails_no_handler(
    redis_url: str, namespace: str, real_redis: Redis
) -> None:
    keys = Keys(namespace)
    # Every span write is refused, as a full Redis (OOM) refuses it.
    await real_redis.set(keys.traces(), "not a stream")
    exporter = RedisSpanExporter(redis_url, keys)
    await _handle_all_while_exporting_to(real_redis, keys, exporter, 500)
    assert exporter.dropped > 0
    assert await real_redis.xlen(keys.dlq("counter")) == 0
    assert await real_redis.get(keys.traces()) == "not a stream"
