"""RPC latency and throughput against a raw redis-py request/reply, same run.

    python bench/rpc.py [--calls 2000] [--concurrent 10000] [--redis-url URL]

Both sides run in this process: a responder (raw: XREADGROUP + XADD reply +
XACK; streamcart: a Consumer with the counter's `counter.get` handler) and a
caller (raw: XADD request + XREAD on its reply stream; streamcart: RpcClient).
Prints p50/p99 of sequential round trips and calls/s with 64 in flight, and
streamcart's ratio to the raw figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from server import add_redis_option, redis_for_bench

from streamcart.bus.connection import connect
from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.rpc import RpcClient
from streamcart.examples import counter

IN_FLIGHT = 64


class RawRpc:
    """The least a request/reply over streams can do."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.inbox = f"{prefix}:raw:inbox"
        self.replies = f"{prefix}:raw:replies"
        self.waiters: dict[str, asyncio.Future[str]] = {}
        self.running = True  # loops end on this flag: redis-py may swallow a cancel

    async def serve(self) -> None:
        await self.redis.xgroup_create(self.inbox, "g", id="0", mkstream=True)
        while self.running:
            reply = await self.redis.xreadgroup("g", "c", {self.inbox: ">"}, count=100, block=100)
            for _, entries in reply or ():
                async with self.redis.pipeline(transaction=False) as pipe:
                    for _, fields in entries:
                        pipe.xadd(self.replies, {"cid": fields["cid"], "data": fields["data"]})
                    pipe.xack(self.inbox, "g", *(entry_id for entry_id, _ in entries))
                    await pipe.execute()

    async def read(self) -> None:
        last = "$"
        while self.running:
            reply = await self.redis.xread({self.replies: last}, count=500, block=100)
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id
                    waiter = self.waiters.pop(fields["cid"], None)
                    if waiter is not None:
                        waiter.set_result(fields["data"])

    async def call(self) -> str:
        cid = uuid.uuid4().hex
        waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiters[cid] = waiter
        await self.redis.xadd(self.inbox, {"cid": cid, "data": '{"name": "n"}'})
        return await asyncio.wait_for(waiter, 5)


async def sequential(call: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def concurrent(call: Callable[[], Awaitable[object]], count: int) -> float:
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with sem:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - start)


async def main(url: str, calls: int, many: int) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    redis = connect(url)
    keys = Keys(prefix)
    tasks: list[asyncio.Task[None]] = []
    raw = RawRpc(redis, prefix)
    try:
        tasks += [asyncio.create_task(raw.serve()), asyncio.create_task(raw.read())]
        await asyncio.sleep(0.2)
        await raw.call()  # warm up
        raw_p50, raw_p99 = await sequential(raw.call, calls)
        raw_rate = await concurrent(raw.call, many)

        await redis.hset(keys.state("counter", "counts"), "n", 1)
        service = counter.build(ServiceOptions(block_ms=100))
        consumer = Consumer(service, redis, name="bench", keys=keys, concurrency=IN_FLIGHT)
        stop = asyncio.Event()
        running = asyncio.create_task(consumer.run(stop))
        async with RpcClient(redis, keys) as rpc:

            async def sc_call() -> object:
                return await rpc.call("counter.get", {"name": "n"})

            await sc_call()
            p50, p99 = await sequential(sc_call, calls)
            rate = await concurrent(sc_call, many)
        stop.set()
        await running

        print(f"sequential round trips ({calls:,} calls)      p50        p99")
        print(f"  raw redis-py request/reply            {raw_p50:6.3f} ms  {raw_p99:6.3f} ms")
        print(f"  streamcart RpcClient -> Consumer      {p50:6.3f} ms  {p99:6.3f} ms"
              f"   ({p50 / raw_p50:.2f}x / {p99 / raw_p99:.2f}x raw)")  # fmt: skip
        print(f"concurrent ({many:,} calls, {IN_FLIGHT} in flight)")
        print(f"  raw redis-py request/reply            {raw_rate:8,.0f} calls/s")
        print(f"  streamcart                            {rate:8,.0f} calls/s"
              f"   ({rate / raw_rate:.2f}x raw)")  # fmt: skip
    finally:
        raw.running = False
        await asyncio.wait(tasks, timeout=2)
        async for key in redis.scan_iter(match=f"*{prefix}*"):
            await redis.delete(key)
        await redis.aclose()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--concurrent", type=int, default=10_000)
    add_redis_option(parser)
    args = parser.parse_args()
    with redis_for_bench(args.redis_url) as url:
        asyncio.run(main(url, args.calls, args.concurrent))


if __name__ == "__main__":
    cli()
