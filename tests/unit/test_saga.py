"""The order saga on fakeredis: orders, inventory, payments and logistics together.

A stand-in catalog prices the lines; everything else is the real services,
with logistics' delays cut to a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from fakeredis import FakeAsyncRedis

from streamcart.bus.consumer import Consumer
from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.rpc import RpcClient
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, InvalidError
from streamcart.workers import events
from streamcart.workers.invariants import check_invariants
from streamcart.workers.inventory import service as inventory
from streamcart.workers.inventory import stock
from streamcart.workers.logistics import service as logistics
from streamcart.workers.logistics.fees import LogisticsSettings
from streamcart.workers.orders import service as orders
from streamcart.workers.payments import service as payments
from streamcart.workers.payments.provider import SandboxProvider, SandboxSettings
from tests.unit.support import KEYS, eventually

FAST = ServiceOptions(block_ms=20, retry_initial_ms=10, claim_timeout_ms=500)
PRICES = {"tea": 1_250, "cup": 3_000}
ADDRESS = {"name": "Li Lei", "line1": "1 Nanjing Rd", "city": "Shanghai", "zone": "local",
           "postcode": "200000"}  # fmt: skip


class GetMany(msgspec.Struct):
    skus: list[str]


def fake_catalog() -> Service:
    service = Service("catalog", options=FAST)

    @service.on("catalog.get_many")
    async def get_many(msg: GetMany, ctx: Context) -> dict[str, Any]:
        items = [{"sku": sku, "name": sku, "price": PRICES[sku], "currency": "CNY",
                  "weight_g": 300} for sku in msg.skus if sku in PRICES]  # fmt: skip
        return {"items": items}

    return service


@contextlib.asynccontextmanager
async def shop(redis: FakeAsyncRedis, **settings: Any) -> AsyncIterator[RpcClient]:
    """Every saga service running; yields an RPC client."""
    services = [
        fake_catalog(), orders.build(FAST), inventory.build(FAST), payments.build(FAST),
        logistics.build(FAST),
    ]  # fmt: skip
    stop = asyncio.Event()
    consumers = []
    for service in services:
        consumer = Consumer(service, redis, name="c1", keys=KEYS, concurrency=16)
        if service.name == "logistics":
            consumer.apply_settings(
                LogisticsSettings(
                    dispatch_after_ms=30, deliver_after_ms=30, stop_notice_after_ms=30
                )
            )
        if service.name in settings:
            consumer.apply_settings(settings[service.name])
        consumers.append(consumer)
    tasks = [asyncio.create_task(consumer.run(stop)) for consumer in consumers]
    rpc = RpcClient(redis, KEYS)
    try:
        yield rpc
    finally:
        await rpc.aclose()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        for consumer in consumers:
            await consumer.rpc.aclose()


async def add_stock(rpc: RpcClient, sku: str, qty: int) -> None:
    await rpc.call("inventory.add_stock", {"sku": sku, "qty": qty})


async def place(rpc: RpcClient, items: list[dict[str, Any]], **extra: Any) -> str:
    request = {"user_id": "u1", "items": items, "payment_method": "card", "address": ADDRESS,
               **extra}  # fmt: skip
    reply = await rpc.call(events.ORDERS_PLACE, request, response_type=events.OrderAccepted)
    assert reply.status == events.PENDING
    return reply.order_id


async def order_in(rpc: RpcClient, order_id: str, *statuses: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.update(await rpc.call("orders.get", {"order_id": order_id}))
        return found["status"] in statuses

    await eventually(reached, within=10)
    return found


async def all_invariants_hold(redis: FakeAsyncRedis) -> None:
    """Once the shop is quiet (give it a moment), every invariant holds."""
    problems: list[str] = []

    async def quiet() -> bool:
        problems[:] = await check_invariants(redis, KEYS)
        return not problems

    try:
        await eventually(quiet, within=10)
    except AssertionError:
        raise AssertionError("\n".join(problems)) from None


async def level(redis: FakeAsyncRedis, sku: str) -> stock.Level:
    [found] = await stock.levels(redis, KEYS, [sku])
    return found


async def test_an_order_with_one_line_short_is_rejected_whole(fake_redis: FakeAsyncRedis) -> None:
    async with shop(fake_redis) as rpc:
        await add_stock(rpc, "tea", 10)
        await add_stock(rpc, "cup", 1)  # one short of the order's two
        order_id = await place(rpc, [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 2}],
                               payment_token="tok_ok")  # fmt: skip
        order = await order_in(rpc, order_id, "DELIVERED", "REJECTED")
    assert order["status"] == "REJECTED" and "cup" in order["reason"]
    assert (await level(fake_redis, "tea")).available == 10
    assert (await level(fake_redis, "cup")).available == 1


async def test_delivered_with_payment_shipment_and_stock_committed(
    fake_redis: FakeAsyncRedis,
) -> None:
    async with shop(fake_redis) as rpc:
        await add_stock(rpc, "tea", 10)
        await add_stock(rpc, "cup", 5)
        order_id = await place(rpc, [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 1}])
        order = await order_in(rpc, order_id, "DELIVERED")
        await all_invariants_hold(fake_redis)
    assert order["total"] == 2 * 1_250 + 3_000
    assert [step["status"] for step in order["timeline"]] == [
        "PENDING", "RESERVED", "CONFIRMED", "SHIPPED", "DELIVERED",
    ]  # fmt: skip
    assert order["payment"] == {"status": "CAPTURED", "amount": 5_500, "refunded": 0}
    assert order["shipment"]["status"] == "DELIVERED" and order["shipment"]["fee"] == 600
    tea = await level(fake_redis, "tea")
    assert (tea.available, tea.reserved, tea.shipped, tea.added) == (8, 0, 2, 10)
    completed = [f for _, f in await fake_redis.xrange(KEYS.events("order"))
                 if f["type"] == events.ORDER_COMPLETED]  # fmt: skip
    assert len(completed) == 1


async def test_out_of_stock_is_rejected_with_stock_intact(fake_redis: FakeAsyncRedis) -> None:
    async with shop(fake_redis) as rpc:
        await add_stock(rpc, "tea", 3)
        order_id = await place(rpc, [{"sku": "tea", "qty": 2}, {"sku": "cup", "qty": 1}])
        order = await order_in(rpc, order_id, "REJECTED")
        await all_invariants_hold(fake_redis)
    assert "cup (wanted 1, 0 available)" in order["reason"]
    tea = await level(fake_redis, "tea")
    assert (tea.available, tea.reserved) == (3, 0)
    assert order["payment"] is None


async def test_a_declined_payment_fails_the_order_and_releases_the_stock(
    fake_redis: FakeAsyncRedis,
) -> None:
    async with shop(fake_redis) as rpc:
        await add_stock(rpc, "tea", 5)
        order_id = await place(rpc, [{"sku": "tea", "qty": 5}], payment_token="tok_declined")
        order = await order_in(rpc, order_id, "PAYMENT_FAILED")

        async def released() -> bool:
            return (await level(fake_redis, "tea")).available == 5

        await eventually(released)
        await all_invariants_hold(fake_redis)
    assert order["payment"]["status"] == "FAILED"
    assert (await level(fake_redis, "tea")).reserved == 0
    assert await SandboxProvider(fake_redis, KEYS).ledger() == []


async def test_a_provider_that_times_out_is_retried_then_the_payment_fails(
    fake_redis: FakeAsyncRedis,
) -> None:
    quick = payments.PaymentsSettings(sandbox=SandboxSettings(timeout_ms=20), retry_pause_ms=5)
    async with shop(fake_redis, payments=quick) as rpc:
        await add_stock(rpc, "tea", 1)
        order_id = await place(rpc, [{"sku": "tea", "qty": 1}], payment_token="tok_timeout")
        order = await order_in(rpc, order_id, "PAYMENT_FAILED")
        payment = await rpc.call("payments.get", {"order_id": order_id})
    assert payment["code"] == "timeout" and "did not answer" in order["reason"]


async def test_cancel_after_capture_refunds_and_releases(fake_redis: FakeAsyncRedis) -> None:
    slow = LogisticsSettings(dispatch_after_ms=1_000, stop_notice_after_ms=30)
    async with shop(fake_redis, logistics=slow) as rpc:
        await add_stock(rpc, "tea", 4)
        order_id = await place(rpc, [{"sku": "tea", "qty": 4}])
        await order_in(rpc, order_id, "CONFIRMED")

        async def shipment_made() -> bool:  # else the cancel stops it before it is made
            order = await rpc.call("orders.get", {"order_id": order_id})
            return order["shipment"] is not None

        await eventually(shipment_made)
        cancelled = await rpc.call("orders.cancel", {"order_id": order_id})
        assert cancelled["status"] == "CANCELLED"

        async def refunded() -> bool:
            order = await rpc.call("orders.get", {"order_id": order_id})
            return bool(order["payment"] and order["payment"]["refunded"] == 1_250 * 4)

        await eventually(refunded, within=10)

        async def released() -> bool:
            return (await level(fake_redis, "tea")).available == 4

        await eventually(released)
        shipment = await rpc.call("logistics.get_shipment", {"order_id": order_id})
        with pytest.raises(ConflictError, match="CANCELLED"):
            await rpc.call("orders.cancel", {"order_id": order_id})
        await all_invariants_hold(fake_redis)  # the dispatch, when due, leaves it alone
    assert shipment["status"] == "CANCELLED"
    kinds = [entry["kind"] for entry in await SandboxProvider(fake_redis, KEYS).ledger()]
    assert kinds == ["capture", "refund"]


async def test_parallel_placements_with_one_key_make_one_order(fake_redis: FakeAsyncRedis) -> None:
    async with shop(fake_redis) as rpc:
        await add_stock(rpc, "tea", 100)
        items = [{"sku": "tea", "qty": 1}]
        ids = await asyncio.gather(
            *(place(rpc, items, idempotency_key="checkout-1") for _ in range(30))
        )
        assert len(set(ids)) == 1
        await order_in(rpc, ids[0], "DELIVERED")
        with pytest.raises(ConflictError, match="Idempotency-Key"):
            await place(rpc, [{"sku": "tea", "qty": 2}], idempotency_key="checkout-1")
        listed = await rpc.call("orders.list", {"user_id": "u1"})
        await all_invariants_hold(fake_redis)
    assert listed["total"] == 1
    assert [e["kind"] for e in await SandboxProvider(fake_redis, KEYS).ledger()] == ["capture"]
    assert (await level(fake_redis, "tea")).shipped == 1


async def test_no_oversell_when_orders_race_for_the_last_units(fake_redis: FakeAsyncRedis) -> None:
    async with shop(fake_redis) as rpc:
        await add_stock(rpc, "cup", 10)
        ids = await asyncio.gather(*(place(rpc, [{"sku": "cup", "qty": 1}]) for _ in range(40)))
        finals = [
            (await order_in(rpc, order_id, "DELIVERED", "REJECTED"))["status"] for order_id in ids
        ]
        await all_invariants_hold(fake_redis)
    assert finals.count("DELIVERED") == 10 and finals.count("REJECTED") == 30
    cup = await level(fake_redis, "cup")
    assert (cup.available, cup.reserved, cup.shipped) == (0, 0, 10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"items": []}, "1..50 lines"),
        ({"items": [{"sku": "tea", "qty": 0}]}, "qty of 'tea'"),
        ({"items": [{"sku": "tea", "qty": 1}, {"sku": "tea", "qty": 1}]}, "one line only"),
        ({"items": [{"sku": "nope", "qty": 1}]}, "unknown sku: nope"),
        ({"payment_method": "cash"}, "payment_method"),
        ({"address": {**ADDRESS, "city": " "}}, "address.city"),
    ],
)
async def test_a_bad_order_is_refused_with_the_reason(
    fake_redis: FakeAsyncRedis, change: dict[str, Any], message: str
) -> None:
    async with shop(fake_redis) as rpc:
        request = {"user_id": "u1", "items": [{"sku": "tea", "qty": 1}], "payment_method": "card",
                   "address": ADDRESS, **change}  # fmt: skip
        with pytest.raises(InvalidError, match=message):
            await rpc.call(events.ORDERS_PLACE, request)


async def test_the_invariant_check_names_what_is_broken(fake_redis: FakeAsyncRedis) -> None:
    async with shop(fake_redis) as rpc:
        await add_stock(rpc, "tea", 5)
        order_id = await place(rpc, [{"sku": "tea", "qty": 1}])
        await order_in(rpc, order_id, "DELIVERED")
        await all_invariants_hold(fake_redis)
    provider = SandboxProvider(fake_redis, KEYS)
    await fake_redis.xadd(provider.ledger_key, {"kind": "capture", "key": order_id,
                                                 "amount": "1250", "currency": "CNY"})  # fmt: skip
    await fake_redis.xadd(provider.ledger_key, {"kind": "refund", "key": "refund:ghost",
                                                 "amount": "10", "currency": "CNY"})  # fmt: skip
    await fake_redis.hincrby(stock.stock_key(KEYS, "tea"), "available", 1)
    await fake_redis.xadd(KEYS.dlq("orders"), {"type": "order.placed", "dlq_error": "boom"})
    problems = "\n".join(await check_invariants(fake_redis, KEYS))
    assert f"order {order_id} was charged 2 times" in problems
    assert "order ghost was refunded without a capture" in problems
    assert "sku tea: available + reserved + shipped != added" in problems
    assert "dlq:orders: 1 dead letters" in problems


async def test_stock_falling_under_the_threshold_is_announced_once(
    fake_redis: FakeAsyncRedis,
) -> None:
    async with shop(fake_redis) as rpc:
        await add_stock(rpc, "tea", 7)
        for qty in (1, 2, 1):  # 6 left (not low), then 4 (low), then 3 (still low)
            order_id = await place(rpc, [{"sku": "tea", "qty": qty}])
            await order_in(rpc, order_id, "DELIVERED")
    low = [msgspec.json.decode(f["data"]) for _, f in await fake_redis.xrange(
        KEYS.events("inventory")) if f["type"] == events.INVENTORY_LOW_STOCK]  # fmt: skip
    assert low == [{"sku": "tea", "available": 4, "threshold": 5}]
