"""Tracing overhead on consume throughput: off, sampled at 10 % and at 100 %, same run.

    python bench/tracing.py [--messages 20000] [--increment-messages 5000]
                            [--repeats 3] [--concurrency 32] [--redis-url URL]

One in-process Consumer of the counter example, with the given concurrency,
drains a backlog published beforehand with tracing off, so the entries carry
no trace context and the consumer makes the root sampling decision. Timing
runs from the consumer's start until every entry is acknowledged. Traced
settings export real spans to the namespace's trace stream from the batch
processor's background thread, as a worker does; the flush of what is still
buffered at the end is not timed. Each setting runs ``--repeats`` times,
interleaved (off, 10 %, 100 %, off, ...) so drift hits all alike, in a fresh
namespace whose keys are deleted afterwards; the best run of each is
reported, with the overhead of the traced ones against tracing off (the share
of throughput lost, and the extra time per message), then the spans each
traced run left in the trace stream as a sanity check. Two handlers:
``counter.noop`` (nothing to do, the worst case for relative overhead) and
``counter.increment`` (a WATCH/MULTI commit of a state write and one emitted
event, which the 100 % setting also records as a span).
Without a URL it starts a throwaway embedded server (no persistence).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from bus import sc_consume
from redis.asyncio import Redis
from server import add_redis_option, redis_for_bench

from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Message, Publisher
from streamcart.telemetry import tracing
from streamcart.telemetry.export import RedisSpanExporter, build_tracer
from streamcart.telemetry.sampling import SamplingRule

# (label, sampling ratio); None is tracing off.
SETTINGS: list[tuple[str, float | None]] = [
    ("tracing off", None),
    ("sampled 10 %", 0.1),
    ("sampled 100 %", 1.0),
]
WARMUP = 1_000  # messages of an untimed first pass over every setting


@dataclass(frozen=True)
class Handler:
    """A counter handler to measure, and how many spans one message records at 100 %."""

    message_type: str
    spans_per_message: int

    def payload(self, i: int) -> dict[str, Any]:
        if self.message_type == "counter.increment":
            return {"name": f"c{i % 64}"}
        return {"n": i}


NOOP = Handler("counter.noop", 1)  # the process span
INCREMENT = Handler("counter.increment", 2)  # the process span and the send of its event


@dataclass
class Runs:
    """The runs of one setting: seconds each, and spans that reached the trace stream."""

    seconds: list[float] = field(default_factory=list)
    spans: list[int] = field(default_factory=list)

    def best_rate(self, count: int) -> float:
        return count / min(self.seconds)


async def measure(
    url: str, redis: Redis, handler: Handler, count: int, ratio: float | None, concurrency: int
) -> tuple[float, int]:
    """Seconds one consumer takes to handle and acknowledge ``count`` messages
    under ``ratio`` (None: tracing off), and the spans exported meanwhile."""
    keys = Keys(f"bench{uuid.uuid4().hex[:12]}")
    try:
        tracing.install(None)  # publishing carries no trace context
        messages = [
            Message(type=handler.message_type, data=handler.payload(i), to="counter")
            for i in range(count)
        ]
        await Publisher(redis, keys).publish_many(messages)
        tracer = None
        if ratio is not None:
            exporters = [RedisSpanExporter(url, keys)]
            tracer = build_tracer("counter", exporters, SamplingRule(ratio, parent_based=True))
            tracing.install(tracer)
        elapsed = await sc_consume(redis, keys, count, concurrency)
        spans = 0
        if tracer is not None:
            tracer.shutdown()  # exports what is still buffered
            tracing.install(None)
            spans = await redis.xlen(keys.traces())
        return elapsed, spans
    finally:
        tracing.install(None)
        async for key in redis.scan_iter(match=f"*{keys.namespace}*", count=1_000):
            await redis.unlink(key)


async def bench_handler(
    url: str, redis: Redis, handler: Handler, count: int, repeats: int, concurrency: int
) -> None:
    for _, ratio in SETTINGS:  # warm up connections and the tracing path, untimed
        await measure(url, redis, handler, min(count, WARMUP), ratio, concurrency)
    runs = {label: Runs() for label, _ in SETTINGS}
    for _ in range(repeats):
        for label, ratio in SETTINGS:
            seconds, spans = await measure(url, redis, handler, count, ratio, concurrency)
            runs[label].seconds.append(seconds)
            runs[label].spans.append(spans)
    off = runs[SETTINGS[0][0]].best_rate(count)
    print(
        f"consume throughput, {handler.message_type}, {count:,} messages, "
        f"concurrency {concurrency}, best of {repeats}"
    )
    for label, ratio in SETTINGS:
        rate = runs[label].best_rate(count)
        line = f"  {label:<16} {rate:>10,.0f} msg/s"
        if ratio is not None:
            lost = (off - rate) / off * 100
            extra_us = (1 / rate - 1 / off) * 1e6
            line += f"   (overhead {lost:4.1f} %, {extra_us:+5.1f} us/msg)"
        print(line)
    for label, ratio in SETTINGS[1:]:
        assert ratio is not None
        expected = round(count * handler.spans_per_message * ratio)
        spans = " / ".join(f"{n:,}" for n in runs[label].spans)
        approx = "" if ratio >= 1.0 else "about "
        print(f"  spans exported, {label:<14} {spans}  (expected {approx}{expected:,} a run)")
    print()


async def main(url: str, noop_count: int, increment_count: int, repeats: int, conc: int) -> None:
    redis = connect(url)
    try:
        await bench_handler(url, redis, NOOP, noop_count, repeats, conc)
        await bench_handler(url, redis, INCREMENT, increment_count, repeats, conc)
    finally:
        await redis.aclose()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="for counter.noop")
    parser.add_argument(
        "--increment-messages", type=int, default=5_000, help="for counter.increment"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    add_redis_option(parser)
    args = parser.parse_args()
    with redis_for_bench(args.redis_url) as url:
        asyncio.run(
            main(url, args.messages, args.increment_messages, args.repeats, args.concurrency)
        )


if __name__ == "__main__":
    cli()
