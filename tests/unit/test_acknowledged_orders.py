"""check_invariants and the orders clients were told about: one gone is said, in words."""

from __future__ import annotations

import msgspec
from fakeredis import FakeAsyncRedis

from streamcart.workers import events
from streamcart.workers.invariants import check_invariants
from streamcart.workers.inventory.stock import reservation_key
from streamcart.workers.orders.model import Order, Step
from tests.unit.support import KEYS

ADDRESS = events.Address(name="Li Lei", line1="1 Nanjing Rd", city="Shanghai", zone="local",
                         postcode="200000")  # fmt: skip


async def rejected_order(redis: FakeAsyncRedis, order_id: str) -> None:
    """An order settled for good (rejected: no stock), as the services keep it."""
    order = Order(
        order_id=order_id, user_id="u1", status=events.REJECTED,
        items=[events.Line(sku="tea", qty=1, unit_price=1_000)], total=1_000, currency="CNY",
        timeline=[Step(events.PENDING, 1), Step(events.REJECTED, 2)], payment_method="card",
        address=ADDRESS, reason="out of stock", created_at=1,
    )  # fmt: skip
    await redis.set(KEYS.state("orders", "order", order_id), msgspec.json.encode(order))
    await redis.hset(reservation_key(KEYS, order_id), "state", "rejected")


async def test_an_acknowledged_order_that_is_gone_is_reported(
    fake_redis: FakeAsyncRedis,
) -> None:
    await rejected_order(fake_redis, "o-kept")
    assert await check_invariants(fake_redis, KEYS) == []

    problems = await check_invariants(fake_redis, KEYS, acknowledged=["o-kept", "o-lost"])

    assert problems == ["order o-lost was acknowledged to its client but is gone"]
