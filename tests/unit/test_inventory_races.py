"""Inventory's settle and reserve against a cancel that reads early and a crash
before the commit.

Both scripts move stock before the handler's commit: a settle must read the
lines it moves in the same step (a cancel racing the reservation must not
leave stock reserved for good), and a message handled again after a crash in
between must still announce what its first run did, exactly once.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from fakeredis import FakeAsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from streamcart.bus.commit import commit
from streamcart.bus.consumer import Consumer
from streamcart.bus.context import Context
from streamcart.bus.publisher import Publisher
from streamcart.workers import events
from streamcart.workers.inventory import service as inventory
from streamcart.workers.inventory import stock
from tests.unit.support import KEYS, eventually, running
from tests.unit.test_saga import ADDRESS, FAST

LINES = [events.Line(sku="tea", qty=2, unit_price=1_250)]


def placed(order_id: str) -> events.OrderPlaced:
    return events.OrderPlaced(
        order_id=order_id, user_id="u1", items=LINES, total=2_500, currency="CNY",
        payment_method="card", address=events.Address(**ADDRESS),
    )  # fmt: skip


def cancelled(order_id: str) -> events.OrderCancelled:
    return events.OrderCancelled(order_id=order_id, user_id="u1", reason="no", items=LINES)


async def given_stock(redis: FakeAsyncRedis, qty: int) -> None:
    await redis.hset(stock.stock_key(KEYS, "tea"), mapping={"available": qty, "added": qty})


async def announced(redis: FakeAsyncRedis, message_type: str) -> list[dict[str, Any]]:
    entries = await redis.xrange(KEYS.events("inventory"))
    return [msgspec.json.decode(f["data"]) for _, f in entries if f["type"] == message_type]


async def quiet(consumer: Consumer) -> None:
    async def idle() -> bool:
        for stream in consumer.service.streams(KEYS):
            for group in await consumer.redis.xinfo_groups(stream):
                if group["name"] == consumer.service.name and (group["pending"] or group["lag"]):
                    return False
        return True

    await eventually(idle)


async def test_a_cancel_that_read_before_the_reservation_still_releases_it(
    fake_redis: FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel's settle starts while the order is not reserved yet; the
    reservation lands before its script runs. The stock must come back."""
    await given_stock(fake_redis, 5)
    settle_script = stock._settle
    publisher = Publisher(fake_redis, KEYS)

    async def reservation_lands_first(redis: Any, keys: Any, args: Any) -> Any:
        monkeypatch.setattr(stock, "_settle", settle_script)  # only the first call waits
        await publisher.publish(events.ORDER_PLACED, placed("o1"), key="o1")

        await eventually(lambda: _state_is(fake_redis, "o1", stock.RESERVED))
        return await settle_script(redis, keys, args)

    monkeypatch.setattr(stock, "_settle", reservation_lands_first)
    async with running(inventory.build(FAST), fake_redis) as consumer:
        await publisher.publish(events.ORDER_CANCELLED, cancelled("o1"), key="o1")
        await eventually(lambda: _state_is(fake_redis, "o1", stock.RELEASED))
        await quiet(consumer)
    [tea] = await stock.levels(fake_redis, KEYS, ["tea"])
    assert (tea.available, tea.reserved, tea.shipped) == (5, 0, 0)
    assert await announced(fake_redis, events.INVENTORY_RELEASED) == [{"order_id": "o1"}]


async def _state_is(redis: FakeAsyncRedis, order_id: str, state: str) -> bool:
    return bool(await redis.hget(stock.reservation_key(KEYS, order_id), "state") == state)


def crash_before_the_commit(monkeypatch: pytest.MonkeyPatch, message_type: str) -> list[str]:
    """The first commit of each ``message_type`` message fails as a lost
    connection does (the worker dies there: its scripts ran, nothing of the
    commit did); the entry stays pending and is handled again. Returns the
    ids of the messages it crashed."""
    crashed: list[str] = []

    async def crashing(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        if ctx.message.type == message_type and ctx.message.id not in crashed:
            crashed.append(ctx.message.id)
            raise RedisConnectionError("the worker died before its commit")
        return await commit(ctx, *args, **kwargs)

    monkeypatch.setattr("streamcart.bus.dispatch.commit", crashing)
    return crashed


@pytest.mark.parametrize(
    ("crashing", "announcement", "expected"),
    [
        (events.ORDER_CANCELLED, events.INVENTORY_RELEASED, {"order_id": "o1"}),
        (events.SHIPMENT_DISPATCHED, events.INVENTORY_COMMITTED, {"order_id": "o1"}),
        (events.ORDER_PLACED, events.INVENTORY_LOW_STOCK,
         {"sku": "tea", "available": 4, "threshold": 5}),
    ],
)  # fmt: skip
async def test_a_message_handled_again_after_a_crash_announces_its_step_once(
    fake_redis: FakeAsyncRedis,
    monkeypatch: pytest.MonkeyPatch,
    crashing: str,
    announcement: str,
    expected: dict[str, Any],
) -> None:
    await given_stock(fake_redis, 6)
    crashed = crash_before_the_commit(monkeypatch, crashing)
    publisher = Publisher(fake_redis, KEYS)
    async with running(inventory.build(FAST), fake_redis) as consumer:
        await publisher.publish(events.ORDER_PLACED, placed("o1"), key="o1")
        await eventually(lambda: _state_is(fake_redis, "o1", stock.RESERVED))
        if crashing == events.ORDER_CANCELLED:
            await publisher.publish(events.ORDER_CANCELLED, cancelled("o1"), key="o1")
        elif crashing == events.SHIPMENT_DISPATCHED:
            progress = events.ShipmentProgress(order_id="o1", shipment_id="shp_o1")
            await publisher.publish(events.SHIPMENT_DISPATCHED, progress, key="o1")
        await quiet(consumer)
    assert len(crashed) == 1  # the crash happened, after the script moved the stock
    assert await announced(fake_redis, announcement) == [expected]
    [tea] = await stock.levels(fake_redis, KEYS, ["tea"])
    moved = {events.ORDER_CANCELLED: (6, 0, 0), events.SHIPMENT_DISPATCHED: (4, 0, 2),
             events.ORDER_PLACED: (4, 2, 0)}[crashing]  # fmt: skip
    assert (tea.available, tea.reserved, tea.shipped) == moved  # and only once


async def test_a_second_message_about_a_settled_order_announces_nothing(
    fake_redis: FakeAsyncRedis,
) -> None:
    """payment.failed and order.cancelled both release one order: one release."""
    await given_stock(fake_redis, 6)
    publisher = Publisher(fake_redis, KEYS)
    async with running(inventory.build(FAST), fake_redis) as consumer:
        await publisher.publish(events.ORDER_PLACED, placed("o1"), key="o1")
        await eventually(lambda: _state_is(fake_redis, "o1", stock.RESERVED))
        failed = events.PaymentFailed(order_id="o1", reason="declined", code="declined")
        await publisher.publish(events.PAYMENT_FAILED, failed, key="o1")
        await publisher.publish(events.ORDER_CANCELLED, cancelled("o1"), key="o1")
        await quiet(consumer)
    assert await announced(fake_redis, events.INVENTORY_RELEASED) == [{"order_id": "o1"}]
    [tea] = await stock.levels(fake_redis, KEYS, ["tea"])
    assert (tea.available, tea.reserved) == (6, 0)
