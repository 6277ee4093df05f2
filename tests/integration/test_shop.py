"""The shop end to end through the gateway, every service a real process.

One shop serves the module; each test makes its own products and users, and
the last test checks every invariant of contract section 4 over all of it.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.config.store import ConfigStore
from streamcart.demo import seed, tour
from streamcart.registry.discovery import Discovery
from streamcart.workers.invariants import check_invariants
from streamcart.workers.payments.provider import SandboxProvider
from tests.integration.live_shop import LiveShop, live_shop, shopper
from tests.integration.support import wait_for

ADDRESS = {"name": "Li Lei", "line1": "1 Nanjing Rd", "city": "Shanghai", "zone": "local",
           "postcode": "200000"}  # fmt: skip
FINAL = {"DELIVERED", "REJECTED", "PAYMENT_FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def shop(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveShop]:
    with live_shop(redis_url, Path(tmp_path_factory.mktemp("shop"))) as running:
        yield running


@pytest.fixture
async def shop_redis(shop: LiveShop) -> Any:
    client = connect(shop.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def sku() -> str:
    return f"sku-{uuid.uuid4().hex[:8]}"


async def product(shop: LiveShop, *, price: int = 1_000, stock: int = 10, **extra: Any) -> str:
    """A new product with ``stock`` units; returns its sku."""
    new = sku()
    body = {"sku": new, "name": f"Green tea {new}", "description": "Spring tea from Hangzhou",
            "price": price, "category": "tea", "weight_g": 250, **extra}  # fmt: skip
    async with shop.client(**shop.admin) as admin:
        created = await admin.post("/api/products", json=body)
        assert created.status_code == 201, created.text
        if stock:
            added = await admin.post(f"/api/inventory/{new}/stock", json={"qty": stock})
            assert added.status_code == 200, added.text
    return new


async def order_body(items: list[tuple[str, int]], **extra: Any) -> dict[str, Any]:
    return {"items": [{"sku": s, "qty": q} for s, q in items], "payment_method": "alipay",
            "address": ADDRESS, **extra}  # fmt: skip


async def settled(
    client: httpx.AsyncClient, order_id: str, statuses: set[str] = FINAL, within: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"/api/orders/{order_id}")
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        if order["status"] in statuses:
            return order
        assert time.monotonic() < deadline, f"order stuck in {order['status']}: {order}"
        await asyncio.sleep(0.1)


async def available(client: httpx.AsyncClient, product_sku: str) -> int | None:
    page = (await client.get(f"/api/products/{product_sku}")).json()
    stock = page["stock"]
    return None if stock is None else int(stock["available"])


async def test_register_browse_cart_checkout_and_delivery(shop: LiveShop) -> None:
    tea = await product(shop, price=1_250, stock=10)
    me = await shopper(shop)
    async with shop.client(**me) as client:
        found = (await client.get("/api/products", params={"q": tea.split("-")[1]})).json()
        assert [item["sku"] for item in found["items"]] == [tea]
        page = (await client.get(f"/api/products/{tea}")).json()
        assert page["product"]["price"] == 1_250 and page["stock"] == {"available": 10}
        assert page["degraded"] == []
        assert (await client.post("/api/cart/items", json={"sku": tea, "qty": 2})).json() == {
            "sku": tea, "qty": 2,
        }  # fmt: skip
        cart = (await client.get("/api/cart")).json()
        assert cart["total"] == 2_500
        placed = await client.post("/api/orders", json={"from_cart": True, "payment_method":
                                                        "wechat", "address": ADDRESS})  # fmt: skip
        assert placed.status_code == 202, placed.text
        assert placed.json()["status"] == "PENDING"
        assert len(placed.headers["x-trace-id"]) == 32
        order = await settled(client, placed.json()["order_id"])
        assert order["status"] == "DELIVERED", order
        assert [step["status"] for step in order["timeline"]] == [
            "PENDING", "RESERVED", "CONFIRMED", "SHIPPED", "DELIVERED",
        ]  # fmt: skip
        assert order["payment"] == {"status": "CAPTURED", "amount": 2_500, "refunded": 0}
        assert (await client.get("/api/cart")).json()["items"] == []
        listed = (await client.get("/api/orders")).json()
        assert [o["order_id"] for o in listed["items"]] == [order["order_id"]]
        assert await available(client, tea) == 8


async def test_out_of_stock_is_rejected_with_stock_intact(shop: LiveShop) -> None:
    tea, cup = await product(shop, stock=5), await product(shop, stock=1)
    async with shop.client(**await shopper(shop)) as client:
        body = await order_body([(tea, 3), (cup, 2)])
        placed = (await client.post("/api/orders", json=body)).json()
        order = await settled(client, placed["order_id"])
        assert order["status"] == "REJECTED" and cup in order["reason"]
        assert (await available(client, tea), await available(client, cup)) == (5, 1)


async def test_a_declined_payment_fails_the_order_and_releases_the_stock(shop: LiveShop) -> None:
    tea = await product(shop, stock=4)
    async with shop.client(**await shopper(shop)) as client:
        body = await order_body([(tea, 4)], payment_token="tok_declined")
        placed = (await client.post("/api/orders", json=body)).json()
        order = await settled(client, placed["order_id"])
        assert order["status"] == "PAYMENT_FAILED" and "declined" in order["reason"]
        deadline = time.monotonic() + 10
        while await available(client, tea) != 4:
            assert time.monotonic() < deadline, "the stock was never released"
            await asyncio.sleep(0.1)


async def test_cancel_after_capture_refunds(shop: LiveShop, shop_redis: Redis) -> None:
    tea = await product(shop, price=3_000, stock=2)
    async with shop.client(**await shopper(shop)) as client:
        placed = (await client.post("/api/orders", json=await order_body([(tea, 2)]))).json()
        await settled(client, placed["order_id"], {"CONFIRMED", "SHIPPED", "DELIVERED"})
        cancelled = await client.post(f"/api/orders/{placed['order_id']}/cancel")
        if cancelled.status_code == 409:
            pytest.skip("shipped before the cancel arrived (150 ms dispatch)")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
        deadline = time.monotonic() + 10
        while True:
            order = await settled(client, placed["order_id"])
            if order["payment"]["refunded"] == 6_000:
                break
            assert time.monotonic() < deadline, f"never refunded: {order}"
            await asyncio.sleep(0.1)
        assert await available(client, tea) == 2
    ledger = await SandboxProvider(shop_redis, Keys(shop.namespace)).ledger()
    mine = [entry["kind"] for entry in ledger if placed["order_id"] in entry["key"]]
    assert mine == ["capture", "refund"]


async def test_another_users_order_looks_missing(shop: LiveShop) -> None:
    tea = await product(shop, stock=1)
    async with shop.client(**await shopper(shop)) as alice:
        placed = (await alice.post("/api/orders", json=await order_body([(tea, 1)]))).json()
    order_id, unknown = placed["order_id"], uuid.uuid4().hex
    async with shop.client(**await shopper(shop)) as bob:
        theirs = await bob.get(f"/api/orders/{order_id}")
        missing = await bob.get(f"/api/orders/{unknown}")
        cancel = await bob.post(f"/api/orders/{order_id}/cancel")
    for response, asked in ((theirs, order_id), (missing, unknown), (cancel, order_id)):
        assert response.status_code == 404
        assert response.json()["error"] == {"code": "not_found",
                                            "message": f"no order {asked!r}"}  # fmt: skip
    async with shop.client(**shop.admin) as admin:
        assert (await admin.get(f"/api/orders/{placed['order_id']}")).status_code == 200


async def test_200_concurrent_orders_for_50_units_confirm_exactly_50(shop: LiveShop) -> None:
    cup = await product(shop, stock=50)
    users = [await shopper(shop) for _ in range(4)]
    clients = [shop.client(**headers) for headers in users]
    try:
        body = await order_body([(cup, 1)])
        placed = await asyncio.gather(
            *(clients[i % 4].post("/api/orders", json=body) for i in range(200))
        )
        assert all(response.status_code == 202 for response in placed)
        finals = await asyncio.gather(*(
            settled(clients[i % 4], response.json()["order_id"], within=60)
            for i, response in enumerate(placed)
        ))  # fmt: skip
    finally:
        for client in clients:
            await client.aclose()
    statuses = [order["status"] for order in finals]
    assert statuses.count("DELIVERED") == 50 and statuses.count("REJECTED") == 150
    async with shop.client() as client:
        assert await available(client, cup) == 0


async def test_100_parallel_checkouts_with_one_key_make_one_order_and_one_charge(
    shop: LiveShop, shop_redis: Redis
) -> None:
    tea = await product(shop, stock=100)
    async with shop.client(**await shopper(shop)) as client:
        body = await order_body([(tea, 1)])
        headers = {"Idempotency-Key": f"checkout-{uuid.uuid4().hex}"}
        answers = await asyncio.gather(
            *(client.post("/api/orders", json=body, headers=headers) for _ in range(100))
        )
        assert {response.status_code for response in answers} == {202}
        ids = {response.json()["order_id"] for response in answers}
        assert len(ids) == 1
        [order_id] = ids
        await settled(client, order_id)
        other = await client.post("/api/orders", json=await order_body([(tea, 2)]),
                                  headers=headers)  # fmt: skip
        assert other.status_code == 409
    ledger = await SandboxProvider(shop_redis, Keys(shop.namespace)).ledger()
    assert [entry["kind"] for entry in ledger if entry["key"] == order_id] == ["capture"]


async def test_an_abusive_review_is_rejected_and_a_clean_one_moves_the_rating(
    shop: LiveShop,
) -> None:
    tea = await product(shop, stock=0)
    async with shop.client(**await shopper(shop)) as troll:
        text = "You are idiots and this tea is garbage, scam, total rubbish"
        abusive = await troll.post("/api/reviews", json={"product_id": tea, "rating": 1,
                                                          "text": text})  # fmt: skip
        assert abusive.status_code == 202, abusive.text
    async with shop.client(**await shopper(shop)) as fan:
        clean = await fan.post("/api/reviews", json={
            "product_id": tea, "rating": 5, "text": "Lovely fresh aroma, brews a clear cup",
        })  # fmt: skip
        assert clean.status_code == 202, clean.text
        deadline = time.monotonic() + 20
        while True:
            page = (await fan.get(f"/api/products/{tea}")).json()
            if page["rating"]["count"] == 1 and page["reviews"]:
                break
            assert time.monotonic() < deadline, f"the review never showed: {page}"
            await asyncio.sleep(0.2)
    assert page["rating"]["average"] == 5
    assert [review["rating"] for review in page["reviews"]] == [5]


async def test_the_product_page_degrades_when_a_service_is_down(shop: LiveShop) -> None:
    tea = await product(shop, stock=3)
    recommendations = shop.processes["recommendations"]
    async with shop.client() as client:
        recommendations.send(signal.SIGSTOP)
        try:
            started = time.monotonic()
            page = (await client.get(f"/api/products/{tea}")).json()
            took = time.monotonic() - started
        finally:
            recommendations.send(signal.SIGCONT)
    assert page["degraded"] == ["recommendations"] and page["recommendations"] == []
    assert page["stock"] == {"available": 3} and page["product"]["sku"] == tea
    assert took < 3.0


async def test_the_demo_seeds_the_shop_and_tours_the_saga(
    shop: LiveShop, shop_redis: Redis
) -> None:
    keys = Keys(shop.namespace)
    await seed(shop_redis, keys, log=lambda line: None)
    await seed(shop_redis, keys, log=lambda line: None)  # a restart keeps it
    # As `make run` has it: time to cancel before the parcel leaves.
    config = ConfigStore(shop_redis, keys)
    version = await config.set("logistics", "dispatch_after_ms", 2_000)

    async def applied() -> bool:  # every live logistics worker runs with it
        live = await Discovery(shop_redis, keys).instances("logistics")
        return bool(live) and all(instance.config_version >= version for instance in live)

    await wait_for(applied, within=30, what="the logistics workers on the new config")
    lines: list[str] = []
    try:
        orders = await tour(shop.base_url, log=lines.append)
    finally:
        await config.set("logistics", "dispatch_after_ms", 150)
    assert [order["status"] for order in orders] == ["DELIVERED", "PAYMENT_FAILED", "CANCELLED"]
    assert orders[2]["payment"]["refunded"] == orders[2]["total"]
    assert all(len(order["trace_id"]) == 32 for order in orders)
    assert "streamcart trace show" in lines[0] and "timeline: PENDING" in lines[0]
    async with shop.client() as client:
        page = (await client.get("/api/products/tieguanyin-250g")).json()
    assert page["stock"] == {"available": 50 - 3 + 2}  # 3 ordered; declined and cancelled back


async def test_every_invariant_holds_over_everything_above(
    shop: LiveShop, shop_redis: Redis
) -> None:
    problems: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        problems = await check_invariants(shop_redis, Keys(shop.namespace))
        if not problems:
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail("\n".join(problems[:30]) + f"\n{shop.tails()}")
    assert shop.slot_errors() == []
