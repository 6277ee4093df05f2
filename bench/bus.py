"""Bus throughput against the raw redis-py ceiling, measured in the same run.

    python bench/bus.py [--messages 50000] [--redis-url URL | --cluster]

Prints messages/s for raw pipelined XADD, streamcart's batch publish, a raw
XREADGROUP(COUNT 100) + pipelined XACK loop with msgspec decoding, and
streamcart's consumer (one process, no-op handler), each with its ratio to the
raw figure; then the Redis memory the dedup window holds per handled message
with effects (MEMORY USAGE over its keys), inside the window and once a short
window has passed; then the peak RSS of a real worker process that consumed
the load.
Without a URL it starts a throwaway embedded server (no persistence).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis
from server import add_redis_option, redis_for_bench

from streamcart.bus.connection import connect
from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Message, Publisher
from streamcart.examples import counter

BATCH = 1_000


class Noop(msgspec.Struct):
    n: int


def payloads(count: int) -> list[dict[str, Any]]:
    return [{"n": i} for i in range(count)]


async def raw_publish(redis: Redis, stream: str, count: int) -> float:
    encode = msgspec.json.encode
    start = time.perf_counter()
    for base in range(0, count, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(base, min(count, base + BATCH)):
                pipe.xadd(
                    stream,
                    {"type": "counter.noop", "data": encode({"n": i}), "id": uuid.uuid4().hex},
                )
            await pipe.execute()
    return time.perf_counter() - start


async def raw_consume(redis: Redis, stream: str, count: int) -> float:
    await redis.xgroup_create(stream, "raw", id="0", mkstream=True)
    decoder = msgspec.json.Decoder(Noop)
    seen = 0
    start = time.perf_counter()
    while seen < count:
        reply = await redis.xreadgroup("raw", "c", {stream: ">"}, count=100, block=1000)
        if not reply:
            continue
        ids = []
        for entry_id, fields in reply[0][1]:
            decoder.decode(fields["data"])
            ids.append(entry_id)
        seen += len(ids)
        await redis.xack(stream, "raw", *ids)
    return time.perf_counter() - start


async def sc_publish(redis: Redis, keys: Keys, count: int) -> float:
    publisher = Publisher(redis, keys)
    messages = [Message(type="counter.noop", data=p, to="counter") for p in payloads(count)]
    start = time.perf_counter()
    await publisher.publish_many(messages, chunk=BATCH)
    return time.perf_counter() - start


async def sc_consume(redis: Redis, keys: Keys, count: int, concurrency: int) -> float:
    """Seconds a counter consumer takes to handle and acknowledge ``count``
    messages waiting in its inbox; a message that failed fails the run."""
    service = counter.build(ServiceOptions(block_ms=100))
    consumer = Consumer(service, redis, name="bench", keys=keys, concurrency=concurrency)
    stop = asyncio.Event()
    start = time.perf_counter()
    task = asyncio.create_task(consumer.run(stop))
    while consumer.stats.acked < count:
        await asyncio.sleep(0.005)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    if consumer.stats.handled != count:
        raise RuntimeError(f"handled {consumer.stats.handled} of {count} messages")
    return elapsed


async def dedup_bytes(
    redis: Redis, keys: Keys, count: int, concurrency: int, window_s: int
) -> float:
    """Bytes the dedup window holds per handled ``counter.increment`` (a message
    with effects), after ``count`` of them; for a window shorter than a minute,
    once it has passed and the consumer's collector deleted what it may."""
    await Publisher(redis, keys).publish_many(
        [Message(type="counter.increment", data={"name": "a"}, to="counter")] * count, chunk=BATCH
    )
    service = counter.build(ServiceOptions(block_ms=100, dedup_window_s=window_s))
    consumer = Consumer(service, redis, name="bench", keys=keys, concurrency=concurrency)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        while consumer.stats.acked < count:
            await asyncio.sleep(0.005)
            if task.done():
                task.result()
        if consumer.stats.handled != count:
            raise RuntimeError(f"handled {consumer.stats.handled} of {count} messages")
        used = await _dedup_memory(redis, keys)
        # A window this short passes during the run: wait for its collection.
        deadline = time.monotonic() + window_s * 3 + 30
        while window_s < 60 and used and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            used = await _dedup_memory(redis, keys)
    finally:
        stop.set()
        await task
    return used / count


async def _dedup_memory(redis: Redis, keys: Keys) -> int:
    pattern = f"{keys.dedup_index('counter')}*"
    used = 0
    async for key in redis.scan_iter(match=pattern, count=1000):
        used += await redis.memory_usage(key, samples=0) or 0
    return used


async def worker_rss(url: str, namespace: str, count: int) -> float:
    """Peak RSS (MB) of a real `streamcart worker` process that consumed ``count``."""
    keys = Keys(namespace)
    redis = connect(url)
    await Publisher(redis, keys).publish_many(
        [Message(type="counter.noop", data=p, to="counter") for p in payloads(count)]
    )
    args = ["--redis-url", url, "--namespace", namespace, "worker", "counter"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "streamcart", *args], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            groups = await redis.xinfo_groups(keys.inbox("counter"))
            if groups and groups[0]["lag"] == 0 and groups[0]["pending"] == 0:
                break
            await asyncio.sleep(0.1)
        status = Path(f"/proc/{worker.pid}/status").read_text()
        peak_kb = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
        )
        return peak_kb / 1024
    finally:
        worker.terminate()
        worker.wait(30)
        await redis.aclose()


def report(name: str, count: int, seconds: float, baseline: float | None) -> None:
    rate = count / seconds
    ratio = f"{baseline / seconds:6.2f}x raw" if baseline else "   (raw)  "
    print(f"{name:<34} {rate:>10,.0f} msg/s  {ratio}")


async def main(url: str, count: int, concurrency: int) -> None:
    run = uuid.uuid4().hex[:8]
    redis = connect(url)
    try:
        raw_stream = f"bench{run}:raw"
        keys = Keys(f"bench{run}")
        print(f"{count:,} messages, one process, consumer concurrency {concurrency}\n")
        raw_pub = await raw_publish(redis, raw_stream, count)
        report("raw pipelined XADD", count, raw_pub, None)
        pub = await sc_publish(redis, keys, count)
        report("streamcart publish_many", count, pub, raw_pub)
        raw_con = await raw_consume(redis, raw_stream, count)
        report("raw XREADGROUP+XACK+decode", count, raw_con, None)
        con = await sc_consume(redis, keys, count, concurrency)
        report("streamcart consumer (no-op handler)", count, con, raw_con)
        inside = await dedup_bytes(redis, Keys(f"bench{run}d"), count, concurrency, 3600)
        after = await dedup_bytes(redis, Keys(f"bench{run}e"), count, concurrency, 1)
        print(
            f"\ndedup window per message with effects: {inside:.1f} bytes inside the window "
            f"(dedup_window_s=3600), {after:.1f} bytes after it (dedup_window_s=1)"
        )
        rss = await worker_rss(url, f"bench{run}w", count)
        print(f"\npeak RSS of one worker process after {count:,} messages: {rss:.1f} MB")
    finally:
        async for key in redis.scan_iter(match=f"*bench{run}*"):
            await redis.delete(key)
        await redis.aclose()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=32)
    add_redis_option(parser, cluster=True)
    args = parser.parse_args()
    with redis_for_bench(args.redis_url, cluster=args.cluster) as url:
        asyncio.run(main(url, args.messages, args.concurrency))


if __name__ == "__main__":
    cli()
