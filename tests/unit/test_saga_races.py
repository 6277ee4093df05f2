"""Two messages about one order, in every order they can arrive in.

``order.confirmed`` and ``order.cancelled`` share a stream and logistics
handles them side by side; a late outbox relay can swap them; a cancel can
reach orders while logistics dispatches. Each case is forced here by holding
one handler at a known point, and each must end in an outcome the saga allows:
a cancelled order ships nothing, and a shipped one is not cancelled.
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
from streamcart.bus.publisher import Publisher
from streamcart.bus.rpc import RpcClient
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, NotFoundError
from streamcart.workers import events
from streamcart.workers.invariants import check_invariants
from streamcart.workers.inventory import service as inventory
from streamcart.workers.inventory import stock
from streamcart.workers.logistics import service as logistics
from streamcart.workers.logistics import shipments
from streamcart.workers.logistics.fees import LogisticsSettings
from streamcart.workers.logistics.shipments import (
    CANCELLED,
    CREATED,
    DELIVERED,
    DISPATCHED,
    Shipment,
)
from streamcart.workers.orders import service as orders
from streamcart.workers.orders.model import Order, PaymentView, Step
from streamcart.workers.payments import service as payments
from streamcart.workers.payments.provider import SandboxProvider
from tests.unit.support import KEYS, eventually, running
from tests.unit.test_saga import (
    ADDRESS,
    FAST,
    PRICES,
    GetMany,
    add_stock,
    all_invariants_hold,
    level,
    order_in,
    place,
)

QUICK = LogisticsSettings(dispatch_after_ms=20, deliver_after_ms=20, stop_notice_after_ms=20)
LINES = [events.Line(sku="tea", qty=2, unit_price=PRICES["tea"])]


class Gate:
    """A stand-in catalog that answers the first ``free`` calls and holds the
    rest until opened: a handler that asks it (logistics weighing a parcel)
    stops there, at a point the test knows."""

    def __init__(self, *, free: int = 0) -> None:
        self.free = free
        self.asked = asyncio.Event()
        self.opened = asyncio.Event()

    def service(self) -> Service:
        service = Service("catalog", options=FAST)

        @service.on("catalog.get_many")
        async def get_many(msg: GetMany, ctx: Context) -> dict[str, Any]:
            if self.free:
                self.free -= 1
            else:
                self.asked.set()
                await self.opened.wait()
            items = [{"sku": sku, "name": sku, "price": PRICES[sku], "currency": "CNY",
                      "weight_g": 300} for sku in msg.skus if sku in PRICES]  # fmt: skip
            return {"items": items}

        return service


@contextlib.asynccontextmanager
async def logistics_alone(redis: FakeAsyncRedis, gate: Gate) -> AsyncIterator[Consumer]:
    async with (
        running(gate.service(), redis, name="catalog-1"),
        running(logistics.build(FAST), redis, name="logistics-1") as consumer,
    ):
        consumer.apply_settings(QUICK)
        yield consumer


async def handled(consumer: Consumer, stream: str, entry_id: str) -> bool:
    """Whether ``consumer``'s group has read ``entry_id`` of ``stream`` and acknowledged it."""
    groups = [g for g in await consumer.redis.xinfo_groups(stream)
              if g["name"] == consumer.service.name]  # fmt: skip
    if not groups:
        return False  # the consumer has not started yet
    pending = await consumer.redis.xpending_range(stream, consumer.service.name, "-", "+", 100)
    if any(entry["message_id"] == entry_id for entry in pending):
        return False
    [group] = groups
    last = tuple(map(int, group["last-delivered-id"].split("-")))
    return last >= tuple(map(int, entry_id.split("-")))


async def quiet(consumer: Consumer) -> None:
    """Wait until the service has nothing read, unread or scheduled."""

    async def idle() -> bool:
        redis = consumer.redis
        for stream in consumer.service.streams(KEYS):
            for group in await redis.xinfo_groups(stream):
                if group["name"] == consumer.service.name and (group["pending"] or group["lag"]):
                    return False
        return not await redis.zcard(KEYS.delayed(KEYS.inbox(consumer.service.name)))

    await eventually(idle, within=10)


async def publish(redis: FakeAsyncRedis, message_type: str, data: Any, order_id: str) -> str:
    """Publish an event; the id of its stream entry."""
    await Publisher(redis, KEYS).publish(message_type, data, key=order_id)
    [(entry_id, _)] = await redis.xrevrange(KEYS.stream_for(message_type), count=1)
    return str(entry_id)


def confirmed(order_id: str) -> events.OrderConfirmed:
    return events.OrderConfirmed(
        order_id=order_id, user_id="u1", items=LINES, total=2 * PRICES["tea"], currency="CNY",
        address=events.Address(**ADDRESS),
    )  # fmt: skip


def cancelled(order_id: str) -> events.OrderCancelled:
    return events.OrderCancelled(order_id=order_id, user_id="u1", reason="changed my mind",
                                 items=LINES)  # fmt: skip


async def shipment_events(redis: FakeAsyncRedis, order_id: str) -> list[str]:
    entries = await redis.xrange(KEYS.events("shipment"))
    return [f["type"] for _, f in entries if f.get("key") == order_id]


async def courier_load(redis: FakeAsyncRedis) -> int:
    load = await redis.hgetall(KEYS.state("logistics", "courier-load"))
    return sum(int(count) for count in load.values())


@pytest.mark.parametrize("first", ["confirmed", "cancelled"])
async def test_logistics_ships_nothing_for_an_order_cancelled_in_either_order(
    fake_redis: FakeAsyncRedis, first: str
) -> None:
    """``confirmed`` first: the cancel lands while the shipment is being made
    (logistics is weighing the parcel). ``cancelled`` first: a late relay
    swapped the two."""
    gate = Gate()
    async with logistics_alone(fake_redis, gate) as consumer:
        order_stream = KEYS.events("order")
        if first == "confirmed":
            await publish(fake_redis, events.ORDER_CONFIRMED, confirmed("o1"), "o1")
            await asyncio.wait_for(gate.asked.wait(), 5)
            entry = await publish(fake_redis, events.ORDER_CANCELLED, cancelled("o1"), "o1")
            await eventually(lambda: handled(consumer, order_stream, entry))
            gate.opened.set()
        else:
            gate.opened.set()
            entry = await publish(fake_redis, events.ORDER_CANCELLED, cancelled("o1"), "o1")
            await eventually(lambda: handled(consumer, order_stream, entry))
            await publish(fake_redis, events.ORDER_CONFIRMED, confirmed("o1"), "o1")
        await quiet(consumer)
    assert await shipment_events(fake_redis, "o1") == []
    assert await fake_redis.get(KEYS.state("logistics", "shipment", "o1")) is None
    assert await courier_load(fake_redis) == 0


@contextlib.asynccontextmanager
async def gated_shop(
    redis: FakeAsyncRedis, gate: Gate, settings: LogisticsSettings = QUICK
) -> AsyncIterator[RpcClient]:
    """The saga's services, with a catalog that holds logistics' weighing."""
    services = [orders.build(FAST), inventory.build(FAST), payments.build(FAST)]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(running(gate.service(), redis, name="catalog-1"))
        for service in services:
            await stack.enter_async_context(running(service, redis, name=f"{service.name}-1"))
        shipping = await stack.enter_async_context(
            running(logistics.build(FAST), redis, name="logistics-1")
        )
        shipping.apply_settings(settings)
        rpc = await stack.enter_async_context(RpcClient(redis, KEYS))
        yield rpc


async def test_a_cancel_before_logistics_made_the_shipment_ships_nothing(
    fake_redis: FakeAsyncRedis,
) -> None:
    gate = Gate(free=1)  # the order's pricing passes; logistics' weighing waits
    async with gated_shop(fake_redis, gate) as rpc:
        await add_stock(rpc, "tea", 2)
        order_id = await place(rpc, [{"sku": "tea", "qty": 2}])
        await asyncio.wait_for(gate.asked.wait(), 10)  # confirmed; the shipment half made
        cancelled_order = await rpc.call("orders.cancel", {"order_id": order_id})
        gate.opened.set()
        await all_invariants_hold(fake_redis)
        order = await rpc.call("orders.get", {"order_id": order_id})
    assert cancelled_order["status"] == order["status"] == "CANCELLED"
    assert order["payment"]["refunded"] == 2 * PRICES["tea"]
    assert await shipment_events(fake_redis, order_id) == [events.SHIPMENT_CANCELLED]
    tea = await level(fake_redis, "tea")
    assert (tea.available, tea.reserved, tea.shipped) == (2, 0, 0)


async def test_a_cancel_after_the_parcel_left_is_refused(fake_redis: FakeAsyncRedis) -> None:
    """Logistics dispatched; orders has not heard of it yet and the order is
    still CONFIRMED: the cancel is refused, nothing is refunded or released."""
    await fake_redis.set(
        KEYS.state("orders", "order", "o1"),
        msgspec.json.encode(Order(
            order_id="o1", user_id="u1", status=events.CONFIRMED, items=LINES,
            total=2 * PRICES["tea"], currency="CNY",
            payment=PaymentView(status="CAPTURED", amount=2 * PRICES["tea"]),
            timeline=[Step(events.PENDING, 1), Step(events.RESERVED, 2),
                      Step(events.CONFIRMED, 3)],
            payment_method="card", address=events.Address(**ADDRESS), created_at=1,
        )),
    )  # fmt: skip
    await fake_redis.set(
        KEYS.state("logistics", "shipment", "o1"),
        msgspec.json.encode(Shipment(
            shipment_id="shp_o1", order_id="o1", status=DISPATCHED,
            courier="YTO", fee=600, currency="CNY", zone="local", weight_g=600,
        )),
    )  # fmt: skip
    async with (
        running(orders.build(FAST), fake_redis, name="orders-1"),
        running(logistics.build(FAST), fake_redis, name="logistics-1") as shipping,
        RpcClient(fake_redis, KEYS) as rpc,
    ):
        shipping.apply_settings(QUICK)
        with pytest.raises(ConflictError, match="DISPATCHED"):
            await rpc.call("orders.cancel", {"order_id": "o1"})
        order = await rpc.call("orders.get", {"order_id": "o1"})
    assert order["status"] == "CONFIRMED"
    assert await fake_redis.xlen(KEYS.events("order")) == 0  # no order.cancelled


async def test_a_cancel_racing_the_dispatch_ends_one_way_or_the_other(
    fake_redis: FakeAsyncRedis,
) -> None:
    """Many cancels, each a few milliseconds either side of its dispatch: every
    order ends CANCELLED with nothing shipped, or DELIVERED with the cancel
    refused; never both."""
    racing = LogisticsSettings(dispatch_after_ms=5, deliver_after_ms=5, stop_notice_after_ms=5)
    async with gated_shop(fake_redis, Gate(free=1_000), racing) as rpc:
        await fake_redis.hset(stock.stock_key(KEYS, "tea"), mapping={"available": 10, "added": 10})
        ids = await asyncio.gather(*(place(rpc, [{"sku": "tea", "qty": 1}]) for _ in range(10)))
        outcomes = []
        for order_id in ids:
            await order_in(rpc, order_id, "CONFIRMED", "SHIPPED", "DELIVERED")
            try:
                outcomes.append((await rpc.call("orders.cancel", {"order_id": order_id}))["status"])
            except ConflictError:
                outcomes.append("refused")
        await all_invariants_hold(fake_redis)
    assert set(outcomes) <= {"CANCELLED", "refused"}


async def test_a_stopped_shipment_cancels_an_order_whose_cancel_was_cut_short(
    fake_redis: FakeAsyncRedis,
) -> None:
    """orders' cancel asked logistics to stop the shipment, then died before it
    committed (and its caller gave up): the stop alone still cancels the order,
    once, with its compensations."""
    slow = LogisticsSettings(dispatch_after_ms=300, stop_notice_after_ms=20)
    async with gated_shop(fake_redis, Gate(free=1_000), slow) as rpc:
        await add_stock(rpc, "tea", 2)
        order_id = await place(rpc, [{"sku": "tea", "qty": 2}])
        await order_in(rpc, order_id, "CONFIRMED")

        async def shipment_made() -> bool:
            order = await rpc.call("orders.get", {"order_id": order_id})
            return order["shipment"] is not None

        await eventually(shipment_made)
        stop = {"order_id": order_id, "reason": "cancelled by the customer"}
        await rpc.call(events.LOGISTICS_STOP_SHIPMENT, stop)
        await order_in(rpc, order_id, "CANCELLED", "DELIVERED")
        await all_invariants_hold(fake_redis)
        order = await rpc.call("orders.get", {"order_id": order_id})
    assert order["status"] == "CANCELLED" and order["reason"] == "cancelled by the customer"
    assert order["shipment"]["status"] == "CANCELLED"
    announced = [f for _, f in await fake_redis.xrange(KEYS.events("order"))
                 if f["type"] == events.ORDER_CANCELLED]  # fmt: skip
    assert len(announced) == 1
    assert [e["kind"] for e in await SandboxProvider(fake_redis, KEYS).ledger()] == [
        "capture", "refund",
    ]  # fmt: skip
    assert (await level(fake_redis, "tea")).available == 2


async def test_the_invariant_check_names_a_cancelled_order_that_shipped(
    fake_redis: FakeAsyncRedis,
) -> None:
    async with gated_shop(fake_redis, Gate(free=1_000)) as rpc:
        await add_stock(rpc, "tea", 5)
        shipped_and_cancelled = await place(rpc, [{"sku": "tea", "qty": 1}])
        released_but_left = await place(rpc, [{"sku": "tea", "qty": 1}])
        for order_id in (shipped_and_cancelled, released_but_left):
            await order_in(rpc, order_id, "DELIVERED")
        await all_invariants_hold(fake_redis)
    key = KEYS.state("orders", "order", shipped_and_cancelled)
    order = msgspec.json.decode(await fake_redis.get(key), type=Order)
    timeline = [*order.timeline, Step(events.CANCELLED, order.timeline[-1].at + 1)]
    as_cancelled = msgspec.structs.replace(order, status=events.CANCELLED, timeline=timeline)
    await fake_redis.set(key, msgspec.json.encode(as_cancelled))
    reservation = stock.reservation_key(KEYS, released_but_left)
    await fake_redis.hset(reservation, "state", stock.RELEASED)
    problems = "\n".join(await check_invariants(fake_redis, KEYS))
    assert f"order {shipped_and_cancelled} (CANCELLED): its shipment is DELIVERED" in problems
    assert f"order {shipped_and_cancelled} (CANCELLED): its reservation is committed" in problems
    assert (
        f"order {released_but_left} (DELIVERED): its stock left (shipment DELIVERED) "
        "and was released"
    ) in problems


async def test_a_shipment_stopped_before_it_was_made_says_so(fake_redis: FakeAsyncRedis) -> None:
    async with logistics_alone(fake_redis, Gate()), RpcClient(fake_redis, KEYS) as rpc:
        stop = {"order_id": "o1", "reason": "changed my mind"}
        first = await rpc.call(events.LOGISTICS_STOP_SHIPMENT, stop)
        again = await rpc.call(events.LOGISTICS_STOP_SHIPMENT, stop)
        with pytest.raises(NotFoundError, match="cancelled before one was made"):
            await rpc.call("logistics.get_shipment", {"order_id": "o1"})
    assert first == again == {"order_id": "o1", "shipment_id": "shp_o1",
                              "reason": "changed my mind"}  # fmt: skip


@pytest.mark.parametrize("first", ["stop", "dispatch"])
async def test_a_stop_and_a_dispatch_at_once_take_effect_one_after_the_other(
    fake_redis: FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """The later of the two has read the shipment CREATED and is held there
    while the first commits: its own commit must fail and its rerun see the
    first one's outcome (a stopped shipment stays home; a stop after the
    dispatch is refused)."""
    shipment = Shipment(shipment_id="shp_o1", order_id="o1", status=CREATED, courier="YTO",
                        fee=600, currency="CNY", zone="local", weight_g=600)  # fmt: skip
    await fake_redis.set(KEYS.state("logistics", "shipment", "o1"), msgspec.json.encode(shipment))
    await fake_redis.hset(KEYS.state("logistics", "courier-load"), "YTO", 1)
    later = logistics.SERVICE + (".dispatch" if first == "stop" else ".stop_shipment")
    read, held, go = shipments.watched, asyncio.Event(), asyncio.Event()

    async def later_waits_after_reading(ctx: Context, order_id: str) -> shipments.Watched:
        found = await read(ctx, order_id)
        if ctx.message.type == later and not held.is_set():
            held.set()
            await go.wait()
        return found

    monkeypatch.setattr(shipments, "watched", later_waits_after_reading)
    publisher = Publisher(fake_redis, KEYS)
    stop = {"order_id": "o1", "reason": "changed my mind"}
    async with logistics_alone(fake_redis, Gate()) as consumer, RpcClient(fake_redis, KEYS) as rpc:
        if first == "stop":
            await publisher.publish("logistics.dispatch", {"order_id": "o1"}, to="logistics")
            await asyncio.wait_for(held.wait(), 5)
            await rpc.call(events.LOGISTICS_STOP_SHIPMENT, stop)
            go.set()
        else:
            stopping = asyncio.ensure_future(rpc.call(events.LOGISTICS_STOP_SHIPMENT, stop))
            await asyncio.wait_for(held.wait(), 5)
            await publisher.publish("logistics.dispatch", {"order_id": "o1"}, to="logistics")
            await eventually(lambda: shipment_is(fake_redis, "o1", DISPATCHED))
            go.set()
            with pytest.raises(ConflictError, match="DISPATCHED"):
                await stopping
        await quiet(consumer)
    if first == "stop":
        assert await shipment_is(fake_redis, "o1", CANCELLED)
        assert await shipment_events(fake_redis, "o1") == [events.SHIPMENT_CANCELLED]
        assert await courier_load(fake_redis) == 0
    else:
        assert await shipment_is(fake_redis, "o1", DELIVERED)
        assert await fake_redis.get(KEYS.state("logistics", "stopped", "o1")) is None
        assert await shipment_events(fake_redis, "o1") == [
            events.SHIPMENT_DISPATCHED, events.SHIPMENT_DELIVERED,
        ]  # fmt: skip


async def shipment_is(redis: FakeAsyncRedis, order_id: str, status: str) -> bool:
    raw = await redis.get(KEYS.state("logistics", "shipment", order_id))
    return raw is not None and msgspec.json.decode(raw, type=Shipment).status == status


@pytest.mark.parametrize("first", [events.PAYMENT_CAPTURED, events.PAYMENT_REFUNDED])
async def test_a_refund_and_its_capture_in_either_order_leave_the_order_refunded(
    fake_redis: FakeAsyncRedis, first: str
) -> None:
    """Cancelled while RESERVED, as payments charged: payments publishes the
    capture and its refund together, and orders may handle the refund first."""
    await fake_redis.set(
        KEYS.state("orders", "order", "o1"),
        msgspec.json.encode(Order(
            order_id="o1", user_id="u1", status=events.CANCELLED, items=LINES,
            total=2 * PRICES["tea"], currency="CNY",
            timeline=[Step(events.PENDING, 1), Step(events.RESERVED, 2),
                      Step(events.CANCELLED, 3)],
            payment_method="card", address=events.Address(**ADDRESS), created_at=1,
        )),
    )  # fmt: skip
    money = {"order_id": "o1", "payment_id": "pay_1", "amount": 2 * PRICES["tea"],
             "currency": "CNY"}  # fmt: skip
    payloads = {
        events.PAYMENT_CAPTURED: events.PaymentCaptured(**money, method="card"),
        events.PAYMENT_REFUNDED: events.PaymentRefunded(**money),
    }
    later = next(t for t in payloads if t != first)
    async with running(orders.build(FAST), fake_redis, name="orders-1") as consumer:
        for message_type in (first, later):
            entry = await publish(fake_redis, message_type, payloads[message_type], "o1")
            await eventually(lambda e=entry: handled(consumer, KEYS.events("payment"), e))
    raw = await fake_redis.get(KEYS.state("orders", "order", "o1"))
    order = msgspec.json.decode(raw, type=Order)
    assert order.status == events.CANCELLED
    assert order.payment == PaymentView(status="REFUNDED", amount=2 * PRICES["tea"],
                                        refunded=2 * PRICES["tea"])  # fmt: skip
