"""Orders keep flowing while worker processes are SIGKILLed; nothing is lost or doubled.

The saga's services run as supervised pools of two processes. While 1,000
orders go through the gateway, a random pool child is killed every few hundred
milliseconds (its pool starts a new one, fair game again two seconds later).
The payment provider times out a tenth of its calls (half of those after the
money moved, which only a look-up tells), and a tenth of the orders are
cancelled at a random moment of their saga. Clients retry a failed placement
with the same Idempotency-Key and a failed cancel, as a real client would.
Once the shop is quiet, every invariant of contract section 4 holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.workers import events
from streamcart.workers.invariants import check_invariants
from streamcart.workers.orders.model import Order
from tests.integration.live_shop import LiveShop, live_shop, shopper
from tests.integration.support import pool_workers

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

SAGA = ("users", "catalog", "orders", "inventory", "payments", "logistics")
ORDERS = 1_000
IN_FLIGHT = 24
KILL_EVERY_S = 0.5
# A child is killed once it has run this long: one killed again while it starts
# up tests the pool's crash-loop backoff, not the shop.
MIN_AGE_S = 2.0
MIN_KILLS = 20
PLACE_WITHIN_S = 180.0
CANCEL_WITHIN_S = 60.0
# The latest moment after its placement at which an order is cancelled: most
# sagas are over by then, so the cancels land in every step of it.
CANCEL_BY_S = 1.5
# A tenth of the provider's calls time out, half of them after charging.
FLAKY_PROVIDER = (
    "payments",
    "sandbox",
    '{"timeout_rate": 0.05, "timeout_after_charge_rate": 0.05, "timeout_ms": 100}',
)
ADDRESS = {"name": "Li Lei", "line1": "1 Nanjing Rd", "city": "Shanghai", "zone": "local",
           "postcode": "200000"}  # fmt: skip


@pytest.fixture(scope="module")
def shop(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    logs = Path(tmp_path_factory.mktemp("chaos"))
    with live_shop(
        redis_url, logs, services=SAGA, processes=2, settings=[FLAKY_PROVIDER]
    ) as running:
        yield running


async def setup_products(shop: LiveShop, count: int, units: int) -> list[str]:
    skus = [f"chaos-{i}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    async with shop.client(**shop.admin) as admin:
        for sku in skus:
            body = {"sku": sku, "name": f"Chaos tea {sku}", "price": 990, "weight_g": 100}
            assert (await admin.post("/api/products", json=body)).status_code == 201
            added = await admin.post(f"/api/inventory/{sku}/stock", json={"qty": units})
            assert added.status_code == 200
    return skus


async def place_with_retries(client: httpx.AsyncClient, body: dict[str, object], key: str) -> str:
    """The order's id. A timeout or a 5xx is retried with the same key after the
    Retry-After the gateway gives (its breaker opens while workers die), as a
    well-behaved client does."""
    last = ""
    deadline = time.monotonic() + PLACE_WITHIN_S
    while time.monotonic() < deadline:
        pause = 0.2
        with contextlib.suppress(httpx.TransportError):
            response = await client.post("/api/orders", json=body,
                                         headers={"Idempotency-Key": key})  # fmt: skip
            if response.status_code == 202:
                order_id: str = response.json()["order_id"]
                return order_id
            assert response.status_code >= 500 or response.status_code == 429, response.text
            last = f"{response.status_code} {response.text}"
            pause = float(response.headers.get("retry-after", pause))
        await asyncio.sleep(pause)
    raise AssertionError(f"order {key} could not be placed; last answer: {last}")


async def cancel_with_retries(client: httpx.AsyncClient, order_id: str) -> bool:
    """Cancel after a random pause; True if it took, False if the order was past
    cancelling (a 409). A timeout or a 5xx is tried again, as by a patient client."""
    await asyncio.sleep(random.uniform(0, CANCEL_BY_S))
    last = ""
    deadline = time.monotonic() + CANCEL_WITHIN_S
    while time.monotonic() < deadline:
        pause = 0.2
        with contextlib.suppress(httpx.TransportError):
            response = await client.post(f"/api/orders/{order_id}/cancel")
            if response.status_code in (200, 409):
                return response.status_code == 200
            assert response.status_code >= 500 or response.status_code == 429, response.text
            last = f"{response.status_code} {response.text}"
            pause = float(response.headers.get("retry-after", pause))
        await asyncio.sleep(pause)
    raise AssertionError(f"order {order_id} could not be cancelled; last answer: {last}")


async def killer(shop: LiveShop, stop: asyncio.Event) -> int:
    """SIGKILL a random child of a random pool every KILL_EVERY_S, until ``stop``
    and at least MIN_KILLS (a fast shop places its orders before that: the
    sagas behind them are still running); returns how many."""
    killed = 0
    pools = [shop.processes[name].pid for name in SAGA]
    first_seen: dict[int, float] = {}
    while not stop.is_set() or killed < MIN_KILLS:
        await asyncio.sleep(KILL_EVERY_S)
        now = time.monotonic()
        children = sorted(pool_workers(random.choice(pools)))
        grown = [pid for pid in children if now - first_seen.setdefault(pid, now) >= MIN_AGE_S]
        if grown:
            with contextlib.suppress(ProcessLookupError):
                os.kill(random.choice(grown), signal.SIGKILL)
                killed += 1
    return killed


async def test_a_thousand_orders_through_random_sigkills_keep_every_invariant(
    shop: LiveShop,
) -> None:
    skus = await setup_products(shop, count=5, units=150)
    headers = await shopper(shop)
    stop = asyncio.Event()
    kills = asyncio.create_task(killer(shop, stop))
    placed: list[str] = []
    cancels: dict[str, asyncio.Task[bool]] = {}
    queue = iter(range(ORDERS))
    async with httpx.AsyncClient(base_url=shop.base_url, timeout=10, headers=headers) as client:

        async def customer() -> None:
            for i in queue:
                token = "tok_declined" if i % 10 == 0 else "tok_ok"
                line = {"sku": skus[i % len(skus)], "qty": 1}
                body: dict[str, object] = {
                    "items": [line], "address": ADDRESS, "payment_method": "card",
                    "payment_token": token,
                }  # fmt: skip
                order_id = await place_with_retries(client, body, f"chaos-{i}")
                placed.append(order_id)
                if i % 10 == 5:
                    cancels[order_id] = asyncio.create_task(cancel_with_retries(client, order_id))

        started = time.monotonic()
        await asyncio.gather(*(customer() for _ in range(IN_FLIGHT)))
        await asyncio.gather(*cancels.values())
        cancelled = [order_id for order_id, took in cancels.items() if took.result()]
        stop.set()
        killed = await kills
        took = time.monotonic() - started
    print(f"placed {len(placed)} orders in {took:.1f} s, {killed} processes killed, "
          f"{len(cancelled)} of {len(cancels)} cancels took")  # fmt: skip
    assert len(set(placed)) == ORDERS

    redis = connect(shop.redis_url)
    keys = Keys(shop.namespace)
    try:
        problems: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            problems = await check_invariants(redis, keys, acknowledged=placed)
            if not problems:
                break
            print(f"{len(problems)} problems, e.g. {problems[:3]}")
            await asyncio.sleep(1.0)
        statuses = [
            msgspec.json.decode(raw, type=Order).status
            for raw in await redis.mget([keys.state("orders", "order", id_) for id_ in cancelled])
            if raw is not None
        ]
    finally:
        await redis.aclose()
    assert not problems, "\n".join(problems[:40]) + f"\n{shop.tails()}"
    assert statuses == [events.CANCELLED] * len(cancelled), "a cancel that took did not stick"
    assert shop.slot_errors() == []
