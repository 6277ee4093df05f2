"""An OS crash under the shop, replayed from a copy of the AOF (``appendfsync always``).

A private server with the embedded defaults (AOF on, fsynced before every reply) runs
the order saga: its services as real workers and the gateway, in this process. While
shoppers place orders through the gateway the server is frozen (SIGSTOP: from then on
nothing reaches its disk or its clients), its AOF directory is copied, and it is killed.
A fresh server starts on the copy at the same address and the same workers carry on
against it. Every order a client got a 202 for is there, and once the shop is quiet every
invariant holds; an order that is then removed is reported, in words.

A copy of files reads what the server wrote, fsynced or not, so it cannot tell ``always``
from ``everysec`` (only an OS crash could): what it shows is that a restore from the AOF
keeps every acknowledged order and a consistent shop. The policy itself is the server's
CONFIG, checked first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from streamcart.app import companions
from streamcart.bus.connection import connect
from streamcart.bus.embedded import EmbeddedRedis
from streamcart.bus.keys import Keys
from streamcart.bus.loader import load_service
from streamcart.bus.rpc import RpcClient
from streamcart.bus.worker import run_worker
from streamcart.config.store import ConfigStore
from streamcart.gateway import create_app
from streamcart.workers.invariants import check_invariants
from tests.integration.support import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.standalone, pytest.mark.chaos]

SAGA = ("users", "catalog", "orders", "inventory", "payments", "logistics")
SETTINGS = [
    ("logistics", "dispatch_after_ms", 20),
    ("logistics", "deliver_after_ms", 20),
    ("gateway", "rate", 100_000),
    ("gateway", "burst", 100_000),
]
SHOPPERS = 4
# Orders acknowledged before the freeze; more are under way when it comes.
ACKNOWLEDGED_BEFORE_FREEZE = 20
ADDRESS = {"name": "Li Lei", "line1": "1 Nanjing Rd", "city": "Shanghai", "zone": "local",
           "postcode": "200000"}  # fmt: skip
ACCOUNT = {"email": "wang@example.com", "password": "s3cret-pass", "name": "Wang"}


@contextlib.asynccontextmanager
async def saga_workers(url: str, keys: Keys) -> AsyncIterator[None]:
    """A worker of each saga service, with its heartbeat and config watch, until exit."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            run_worker(load_service(name), url, namespace=keys.namespace, concurrency=16,
                       stop=stop, companions=companions())
        )
        for name in SAGA
    ]  # fmt: skip
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


@contextlib.asynccontextmanager
async def gateway(redis: Redis, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(redis, keys)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client,
    ):
        yield client


async def signed_in(client: httpx.AsyncClient) -> dict[str, str]:
    registered = await client.post("/api/users/register", json=ACCOUNT)
    assert registered.status_code == 201, registered.text
    login = {"email": ACCOUNT["email"], "password": ACCOUNT["password"]}
    response = await client.post("/api/users/login", json=login)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def stocked_product(redis: Redis, keys: Keys) -> str:
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    product = {"sku": sku, "name": "Green tea", "description": "Spring tea", "price": 1_000,
               "currency": "CNY", "category": "tea", "weight_g": 250}  # fmt: skip
    rpc = RpcClient(redis, keys)
    try:
        await rpc.call("catalog.create_product", product)
        await rpc.call("inventory.add_stock", {"sku": sku, "qty": 10_000})
    finally:
        await rpc.aclose()
    return sku


def crash_copy(server: EmbeddedRedis, aof_dir: str, into: Path) -> None:
    """Freeze ``server``, copy its AOF directory into ``into``, then kill it: the copy
    holds exactly what the server had written when it stopped answering."""
    pid = int(server.pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        shutil.copytree(server.data_dir / aof_dir, into / aof_dir)
    finally:
        os.kill(pid, signal.SIGKILL)
    server.stop()  # reaps it and removes its pid and URL files


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


async def test_every_acknowledged_order_survives_a_crash_restored_from_the_aof(
    tmp_path: Path,
) -> None:
    crashed = EmbeddedRedis(tmp_path / "crashed", port=free_port())
    restored = EmbeddedRedis(tmp_path / "restored", port=crashed.port)
    keys = Keys(f"t{uuid.uuid4().hex[:10]}")
    url = crashed.start(daemonize=False)
    redis = connect(url)  # reconnects to whichever server answers at the URL
    try:
        assert (await redis.config_get("appendfsync")) == {"appendfsync": "always"}
        aof_dir = (await redis.config_get("appenddirname"))["appenddirname"]
        for scope, key, value in SETTINGS:
            await ConfigStore(redis, keys).set(scope, key, value)
        async with saga_workers(url, keys), gateway(redis, keys) as client:
            for name in SAGA:
                await wait_for(lambda n=name: redis.zcard(keys.instances(n)), within=30,
                               what=f"a {name} worker to register")  # fmt: skip
            headers = await signed_in(client)
            sku = await stocked_product(redis, keys)
            # A 202 means the gateway read the order's reply from the server: before the
            # freeze, so from what the copy holds, or from the restored server itself.
            acknowledged: list[str] = []
            frozen = asyncio.Event()

            async def shop() -> None:
                body = {"items": [{"sku": sku, "qty": 1}], "payment_method": "card",
                        "payment_token": "tok_ok", "address": ADDRESS}  # fmt: skip
                while not frozen.is_set():
                    placed = await client.post("/api/orders", json=body, headers=headers)
                    # Others, from the moment of the crash on: 503 or 504.
                    if placed.status_code == 202:
                        acknowledged.append(placed.json()["order_id"])

            shoppers = [asyncio.create_task(shop()) for _ in range(SHOPPERS)]

            async def enough() -> bool:
                return len(acknowledged) >= ACKNOWLEDGED_BEFORE_FREEZE

            await wait_for(enough, within=30, what="orders to be acknowledged")
            # In a thread: the shop goes on sending to the frozen server meanwhile.
            await asyncio.to_thread(crash_copy, crashed, aof_dir, restored.data_dir)
            frozen.set()
            # A torn last record would be dropped (aof-load-truncated, on by default).
            await asyncio.to_thread(restored.start, daemonize=False)
            await redis.connection_pool.disconnect()  # its connections died with the server
            await asyncio.gather(*shoppers)  # what was in flight is answered by the copy

            problems: list[str] = []

            async def quiet() -> bool:
                problems[:] = await check_invariants(redis, keys, acknowledged=acknowledged)
                if problems:  # a full check is many round trips: leave the workers the loop
                    await asyncio.sleep(0.2)
                return not problems

            await wait_for(quiet, within=45, what="the restored shop to settle with every "
                           "invariant holding", context=lambda: "\n".join(problems))  # fmt: skip

        assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_FREEZE
        gone = acknowledged[0]
        await redis.delete(keys.state("orders", "order", gone))
        problems = await check_invariants(redis, keys, acknowledged=acknowledged)
        assert f"order {gone} was acknowledged to its client but is gone" in problems
    finally:
        await redis.aclose()
        crashed.stop()
        restored.stop()
