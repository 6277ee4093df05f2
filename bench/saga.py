"""The whole order saga on this machine: orders/s and time to CONFIRMED.

    python bench/saga.py [--orders 1000] [--concurrency 32] [--processes 1]
                         [--tracing on|off] [--redis-url URL | --cluster]

Starts the gateway and the worker pools the saga needs (catalog, orders,
inventory, payments, logistics) as processes, seeds products and stock, cuts
logistics' dispatch and delivery delays to 10 ms, then places ``--orders``
orders through ``POST /api/orders`` with ``--concurrency`` in flight. Each
order's CONFIRMED and DELIVERED times are read off the ``order`` topic
(``order.confirmed`` / ``order.completed``), so watching costs the shop
nothing. Prints completed (delivered) orders per second and the median and
p99 time from POST to CONFIRMED and to DELIVERED.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
from redis.asyncio import Redis
from server import add_redis_option, redis_for_bench

from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.bus.rpc import RpcClient
from streamcart.config.store import ConfigStore
from streamcart.workers.users.signing_keys import SECRET_ENV
from streamcart.workers.users.tokens import SigningKey, issue

SERVICES = ("catalog", "orders", "inventory", "payments", "logistics")
SKUS = [f"bench-{i:02d}" for i in range(20)]
ADDRESS = {"name": "Bench", "line1": "1 Loop Rd", "city": "Shanghai", "zone": "local",
           "postcode": "200000"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def processes(argvs: list[list[str]], env: dict[str, str]) -> Iterator[None]:
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for argv in argvs
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def seed(redis: Redis, keys: Keys) -> None:
    store = ConfigStore(redis, keys)
    await store.set("logistics", "dispatch_after_ms", 10)
    await store.set("logistics", "deliver_after_ms", 10)
    await store.set("gateway", "rate", 1_000_000)
    await store.set("gateway", "burst", 1_000_000)
    async with RpcClient(redis, keys) as rpc:
        for sku in SKUS:
            product = {"sku": sku, "name": f"Bench item {sku}", "price": 1_000,
                       "currency": "CNY", "category": "bench", "weight_g": 200}  # fmt: skip
            await rpc.call("catalog.create_product", product, timeout=30)
            await rpc.call("inventory.add_stock", {"sku": sku, "qty": 1_000_000}, timeout=30)


async def watch(
    redis: Redis, keys: Keys, seen: dict[str, dict[str, float]], stop: asyncio.Event
) -> None:
    """Time of each order's confirmation and completion, as the topic shows them."""
    last = "$"
    while not stop.is_set():
        reply = await redis.xread({keys.events("order"): last}, count=1_000, block=100)
        now = time.perf_counter()
        for _, entries in reply or ():
            for entry_id, fields in entries:
                last = entry_id
                kind = fields.get("type", "")
                if kind in ("order.confirmed", "order.completed"):
                    order_id = fields["key"]
                    seen.setdefault(order_id, {})[kind] = now


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def run(url: str, orders: int, concurrency: int, workers: int, tracing: bool) -> None:
    keys = Keys(f"bench{uuid.uuid4().hex[:8]}")
    port = free_port()
    base = [sys.executable, "-m", "streamcart", "--redis-url", url, "--namespace", keys.namespace]
    secret = secrets.token_urlsafe(48)
    env = {**os.environ, SECRET_ENV: secret}
    if not tracing:
        env["OTEL_TRACES_SAMPLER"] = "always_off"
    argvs = [[*base, "worker", name, "-p", str(workers)] for name in SERVICES]
    argvs.append([*base, "gateway", "--port", str(port)])
    redis = connect(url)
    seen: dict[str, dict[str, float]] = {}
    posted: dict[str, float] = {}
    try:
        with processes(argvs, env):
            await wait_ready(port)
            await seed(redis, keys)
            token, _ = issue(SigningKey(secret.encode()), "bench-user", "user", ttl_s=3600)
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch(redis, keys, seen, stop))
            await asyncio.sleep(0.2)  # the watcher's first read is in place
            started = time.perf_counter()
            await place_all(port, token, orders, concurrency, posted)
            deadline = time.perf_counter() + 120
            while sum("order.completed" in times for times in seen.values()) < orders:
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await watcher
    finally:
        async for key in redis.scan_iter(match=f"*{keys.namespace}*", count=1_000):
            await redis.unlink(key)
        await redis.aclose()
    report(orders, concurrency, workers, tracing, started, posted, seen)


async def wait_ready(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code in (200, 503):
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("the gateway did not start")


async def place_all(
    port: int, token: str, orders: int, concurrency: int, posted: dict[str, float]
) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    queue = iter(range(orders))
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60, headers=headers
    ) as client:

        async def placer() -> None:
            for i in queue:
                body = {"items": [{"sku": SKUS[i % len(SKUS)], "qty": 1}],
                        "payment_method": "card", "address": ADDRESS}  # fmt: skip
                sent = time.perf_counter()
                for _ in range(50):  # services may still be registering
                    response = await client.post("/api/orders", json=body)
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(0.1)
                response.raise_for_status()
                posted[response.json()["order_id"]] = sent

        await asyncio.gather(*(placer() for _ in range(concurrency)))


def report(
    orders: int, concurrency: int, workers: int, tracing: bool, started: float,
    posted: dict[str, float], seen: dict[str, dict[str, float]],
) -> None:  # fmt: skip
    confirmed = [seen[o]["order.confirmed"] - t for o, t in posted.items()
                 if "order.confirmed" in seen.get(o, {})]  # fmt: skip
    delivered = [seen[o]["order.completed"] - t for o, t in posted.items()
                 if "order.completed" in seen.get(o, {})]  # fmt: skip
    last = max((times["order.completed"] for times in seen.values()
                if "order.completed" in times), default=started)  # fmt: skip
    print(f"order saga, {orders:,} orders through POST /api/orders, {concurrency} in flight, "
          f"{workers} process(es) per service, tracing {'on' if tracing else 'off'}")  # fmt: skip
    print(f"  delivered             {len(delivered):,} of {orders:,}")
    print(f"  completed orders/s    {len(delivered) / (last - started):,.0f}")
    for name, samples in (("to CONFIRMED", confirmed), ("to DELIVERED", delivered)):
        if samples:
            print(f"  POST {name:<14} p50 {statistics.median(samples) * 1000:7.1f} ms   "
                  f"p99 {percentile(samples, 0.99) * 1000:7.1f} ms")  # fmt: skip


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--processes", type=int, default=1, help="worker processes per service")
    parser.add_argument("--tracing", choices=("on", "off"), default="on")
    add_redis_option(parser, cluster=True)
    args = parser.parse_args()
    with redis_for_bench(args.redis_url, cluster=args.cluster) as url:
        asyncio.run(run(url, args.orders, args.concurrency, args.processes, args.tracing == "on"))


if __name__ == "__main__":
    cli()
