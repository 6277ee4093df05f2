"""How long a status snapshot takes on a namespace with many streams.

    python bench/status.py [--services 10] [--streams-per-service 5] [--redis-url URL]

Registers the services (each with its inbox and topic streams, consumer
groups, a few hundred entries, some pending, a dead letter), then times
`take_snapshot` (what `streamcart status` and the monitor run) and, as a
baseline, the same reads issued one command per round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from redis.asyncio import Redis
from server import add_redis_option, redis_for_bench

from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.registry.instances import Instance, Registry
from streamcart.registry.status import take_snapshot

RUNS = 30


async def populate(redis: Redis, keys: Keys, services: int, per_service: int) -> list[str]:
    registry = Registry(redis, keys)
    streams_all: list[str] = []
    for s in range(services):
        name = f"svc{s}"
        streams = [keys.inbox(name)] + [
            keys.events(f"topic{s}x{t}") for t in range(per_service - 1)
        ]
        streams_all += streams
        for stream in streams:
            await redis.xgroup_create(stream, name, id="0", mkstream=True)
            async with redis.pipeline(transaction=False) as pipe:
                for i in range(200):
                    pipe.xadd(stream, {"type": "a.b", "data": "{}", "id": str(i)})
                await pipe.execute()
            await redis.xreadgroup(name, "c", {stream: ">"}, count=50)
        await redis.xadd(keys.dlq(name), {"type": "a.b", "data": "{}"})
        for i in range(2):
            instance = Instance(
                service=name, instance_id=f"h-{i}.x", consumer=f"h-{i}", host="h", pid=i,
                version="1", started_at=0, concurrency=8, streams=streams,
            )  # fmt: skip
            await registry.heartbeat(instance, {"handled": 100})
    return streams_all


async def one_by_one(redis: Redis, keys: Keys, streams: list[str], services: int) -> None:
    """The same reads without pipelining: what a naive status command would do."""
    await redis.time()
    await redis.hgetall(keys.services())
    for s in range(services):
        name = f"svc{s}"
        await redis.zrange(keys.instances(name), 0, -1, withscores=True)
        await redis.hgetall(keys.stats(name))
        await redis.xlen(keys.dlq(name))
    for stream in streams:
        group = stream.split(":")[-1] if ":inbox:" in stream else None
        await redis.xlen(stream)
        await redis.xinfo_groups(stream)
        if group:
            await redis.xpending(stream, group)


async def timed(job, runs: int = RUNS) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await job()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def main(url: str, services: int, per_service: int) -> None:
    keys = Keys(f"bench{uuid.uuid4().hex[:8]}")
    redis = connect(url)
    try:
        streams = await populate(redis, keys, services, per_service)
        snapshot = await take_snapshot(redis, keys)
        assert len(snapshot.services) == services
        pipelined = await timed(lambda: take_snapshot(redis, keys))
        naive = await timed(lambda: one_by_one(redis, keys, streams, services))
        print(f"{len(streams)} streams in {services} services, median of {RUNS} runs")
        print(f"take_snapshot (3 pipelined round trips)  {pipelined:7.2f} ms")
        print(f"one command per round trip (baseline)    {naive:7.2f} ms  "
              f"({naive / pipelined:.1f}x slower)")  # fmt: skip
    finally:
        async for key in redis.scan_iter(match=f"*{keys.namespace}*"):
            await redis.delete(key)
        await redis.aclose()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--streams-per-service", type=int, default=5)
    add_redis_option(parser)
    args = parser.parse_args()
    with redis_for_bench(args.redis_url) as url:
        asyncio.run(main(url, args.services, args.streams_per_service))


if __name__ == "__main__":
    cli()
