"""Analytics: minute buckets and the report's arithmetic on their own, then the
service on fakeredis, fed with a day of shop events and asked for its report."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import msgspec
import pytest

from streamcart.bus.consumer import Consumer
from streamcart.bus.envelope import new_message_id
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Publisher
from streamcart.bus.rpc import RpcClient
from streamcart.errors import InvalidError
from streamcart.workers import events
from streamcart.workers.analytics import buckets, report
from streamcart.workers.analytics.report import Funnel, Report, Snapshot, TopProduct, TopViewed
from streamcart.workers.analytics.service import build
from tests.unit.support import KEYS, drained, eventually, running

FAST = ServiceOptions(block_ms=20, retry_initial_ms=5)
ADDRESS = {"name": "Li", "line1": "1 Road", "city": "Shanghai", "zone": "SH", "postcode": "200000"}
MINUTE_S = 60


def _id_at(ms: int) -> str:
    """A message id published at ``ms``, laid out as ``new_message_id`` lays them."""
    rand = int.from_bytes(os.urandom(10), "big") & ((1 << 76) - 1)
    return f"{(ms << 80) | (0x7 << 76) | rand:032x}"


# -- buckets and report, without Redis ----------------------------------------
def test_the_publish_time_is_read_from_the_message_id() -> None:
    before = time.time_ns() // 1_000_000
    published = buckets.published_ms(new_message_id())
    assert published is not None and before <= published <= time.time_ns() // 1_000_000
    assert buckets.published_ms(_id_at(1_700_000_000_123)) == 1_700_000_000_123
    assert buckets.published_ms("1700000000123-7") == 1_700_000_000_123  # a stream entry id


@pytest.mark.parametrize(
    "message_id",
    ["dup-1", "", "m-1", "1700000000123-", "a" * 32, "0123456789ab7xyz" * 2, "١٢٣-0"],
)
def test_an_id_without_a_time_has_none(message_id: str) -> None:
    assert buckets.published_ms(message_id) is None


def test_a_message_falls_in_the_minute_it_was_published() -> None:
    at = 1_700_000_059_999  # 2023-11-14T22:14:19.999Z
    assert buckets.minute_of(_id_at(at)) == 1_700_000_040
    assert buckets.iso(1_700_000_040) == "2023-11-14T22:14:00Z"
    assert buckets.window(3, at) == [1_699_999_920, 1_699_999_980, 1_700_000_040]
    now = buckets.minute_start(time.time_ns() // 1_000_000)
    assert buckets.minute_of("dup-1") in (now, now + MINUTE_S)  # no time in it: now


def test_the_report_sums_the_window_and_keeps_all_time_apart() -> None:
    snapshot = Snapshot(
        minutes=[0, 60],
        counts=[
            {events.ORDER_PLACED: 2, events.PAYMENT_REFUNDED: 1},
            {events.ORDER_PLACED: 1, events.PRODUCT_VIEWED: 4},
        ],
        gmv=[{"CNY": -300}, {"CNY": 500, "USD": 10}],
        counts_all={events.ORDER_PLACED: 9, events.ORDER_CANCELLED: 2},
        gmv_all={"CNY": 7000},
        top_units=[("A", 5)],
        top_views=[("B", 8)],
        buyers=3,
        viewers=4,
    )
    built = report.build(snapshot)
    assert built.window_minutes == 2
    assert built.totals_by_type == {
        events.ORDER_PLACED: 3, events.PAYMENT_REFUNDED: 1, events.PRODUCT_VIEWED: 4,
    }  # fmt: skip
    assert built.gmv_window == {"CNY": 200, "USD": 10}
    assert built.gmv == {"CNY": 7000}
    assert (built.funnel.orders_placed, built.funnel.orders_cancelled) == (9, 2)
    assert (built.funnel_window.orders_placed, built.funnel_window.product_views) == (3, 4)
    assert built.per_minute[1] == report.Minute(
        "1970-01-01T00:01:00Z", {events.ORDER_PLACED: 1, events.PRODUCT_VIEWED: 4},
        {"CNY": 500, "USD": 10},
    )  # fmt: skip
    assert built.top_products == [TopProduct("A", 5)]
    assert built.top_viewed == [TopViewed("B", 8)]


# -- the service on fakeredis -------------------------------------------------
class Shop:
    """A running analytics service, the events it hears and its report."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis, consumer: Consumer, rpc: RpcClient):
        self.redis = redis
        self.consumer = consumer
        self.rpc = rpc
        self.publisher = Publisher(redis, KEYS)

    async def publish(self, message_type: str, message_id: str | None = None, **data: Any) -> None:
        await self.publisher.publish(message_type, data, message_id=message_id)

    async def report(self, minutes: int = 60) -> Report:
        """The report once every event published so far is handled."""
        await drained(self.consumer)
        reply: Report = await self.rpc.call(
            "analytics.report", {"minutes": minutes}, response_type=Report
        )
        return reply


@pytest.fixture
async def shop(fake_redis: fakeredis.FakeAsyncRedis) -> AsyncIterator[Shop]:
    async with (
        running(build(FAST), fake_redis) as consumer,
        RpcClient(fake_redis, KEYS) as rpc,
    ):
        yield Shop(fake_redis, consumer, rpc)


def _lines(*items: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "qty": qty, "unit_price": 1000} for sku, qty in items]


async def _order(shop: Shop, order_id: str, user_id: str, *items: tuple[str, int]) -> None:
    """An order that is placed, reserved, paid and confirmed."""
    lines = _lines(*items)
    total = sum(line["qty"] * 1000 for line in lines)
    common = {"order_id": order_id, "user_id": user_id, "items": lines, "total": total}
    await shop.publish(
        events.ORDER_PLACED, **common, currency="CNY", payment_method="card", address=ADDRESS
    )
    await shop.publish(events.INVENTORY_RESERVED, order_id=order_id, items=lines)
    await shop.publish(
        events.PAYMENT_CAPTURED,
        order_id=order_id, payment_id=f"pay-{order_id}", amount=total, currency="CNY",
        method="card",
    )  # fmt: skip
    await shop.publish(events.ORDER_CONFIRMED, **common, currency="CNY", address=ADDRESS)


async def _a_day_in_the_shop(shop: Shop) -> None:
    for user_id in ("u1", "u2", "u3"):
        await shop.publish("user.registered", user_id=user_id, email=f"{user_id}@x.cn", name="N")
    for user_id, sku in [("u1", "A"), ("u1", "A"), ("u1", "B"), ("u2", "A"), ("u3", "C")]:
        await shop.publish(events.PRODUCT_VIEWED, sku=sku, user_id=user_id)
    await shop.publish(events.PRODUCT_VIEWED, sku="B")  # not signed in
    await shop.publish(events.CART_CHECKED_OUT, user_id="u1", order_id="o1", items=_lines(("A", 2)))
    await shop.publish(events.CART_CHECKED_OUT, user_id="u2", order_id="o3", items=_lines(("C", 4)))
    await _order(shop, "o1", "u1", ("A", 2), ("B", 1))  # 3000
    await _order(shop, "o2", "u1", ("A", 1))  # 1000, cancelled and refunded below
    await _order(shop, "o3", "u2", ("C", 4))  # 4000
    await _order(shop, "o4", "u3", ("B", 1))  # 1000
    # o5: no stock; o6: the card is declined.
    await shop.publish(
        events.ORDER_PLACED, order_id="o5", user_id="u3", items=_lines(("A", 9)), total=9000,
        currency="CNY", payment_method="card", address=ADDRESS,
    )  # fmt: skip
    await shop.publish(events.INVENTORY_REJECTED, order_id="o5", reason="out of stock")
    await shop.publish(events.ORDER_REJECTED, order_id="o5", user_id="u3", reason="out of stock")
    await shop.publish(
        events.ORDER_PLACED, order_id="o6", user_id="u2", items=_lines(("B", 1)), total=1000,
        currency="CNY", payment_method="card", payment_token="tok_declined", address=ADDRESS,
    )  # fmt: skip
    await shop.publish(events.INVENTORY_RESERVED, order_id="o6", items=_lines(("B", 1)))
    await shop.publish(events.PAYMENT_FAILED, order_id="o6", reason="declined", code="declined")
    await shop.publish(events.INVENTORY_RELEASED, order_id="o6")
    await shop.publish(
        events.ORDER_CANCELLED, order_id="o2", user_id="u1", reason="changed mind",
        items=_lines(("A", 1)),
    )  # fmt: skip
    await shop.publish(
        events.PAYMENT_REFUNDED, order_id="o2", payment_id="pay-o2", amount=1000, currency="CNY"
    )
    await shop.publish(
        events.SHIPMENT_CREATED, order_id="o1", shipment_id="s1", courier="sf", fee=800,
        currency="CNY",
    )  # fmt: skip
    await shop.publish(events.SHIPMENT_DISPATCHED, order_id="o1", shipment_id="s1")
    await shop.publish(events.SHIPMENT_DELIVERED, order_id="o1", shipment_id="s1")
    await shop.publish(events.ORDER_COMPLETED, order_id="o1", user_id="u1", items=_lines(("A", 2)))
    await shop.publish(events.SURVEY_SENT, survey_id="sv1", order_id="o1", user_id="u1")


EXPECTED_TOTALS = {
    "cart.checked_out": 2,
    "inventory.rejected": 1,
    "inventory.released": 1,
    "inventory.reserved": 5,
    "order.cancelled": 1,
    "order.completed": 1,
    "order.confirmed": 4,
    "order.placed": 6,
    "order.rejected": 1,
    "payment.captured": 4,
    "payment.failed": 1,
    "payment.refunded": 1,
    "product.viewed": 6,
    "shipment.created": 1,
    "shipment.delivered": 1,
    "shipment.dispatched": 1,
    "survey.sent": 1,
    "user.registered": 3,
}
EXPECTED_FUNNEL = Funnel(
    product_views=6,
    cart_checkouts=2,
    orders_placed=6,
    orders_confirmed=4,
    orders_completed=1,
    orders_rejected=1,
    payments_failed=1,
    orders_cancelled=1,
)


async def test_a_day_in_the_shop_adds_up(shop: Shop) -> None:
    await _a_day_in_the_shop(shop)
    before = buckets.minute_start(time.time_ns() // 1_000_000)
    got = await shop.report()
    after = buckets.minute_start(time.time_ns() // 1_000_000)
    assert got.window_minutes == 60
    assert got.totals_by_type == EXPECTED_TOTALS
    assert got.gmv == got.gmv_window == {"CNY": 8000}  # 3000 + 1000 + 4000 + 1000 - 1000
    assert got.funnel == got.funnel_window == EXPECTED_FUNNEL
    assert got.top_products == [TopProduct("C", 4), TopProduct("A", 3), TopProduct("B", 2)]
    assert got.top_viewed == [TopViewed("A", 3), TopViewed("B", 2), TopViewed("C", 1)]
    assert got.unique_buyers == 3  # u1 ordered twice
    assert got.unique_viewers == 3  # the anonymous view has no user
    assert len(got.per_minute) == 60
    assert got.per_minute[-1].minute in {buckets.iso(before), buckets.iso(after)}  # up to now
    summed: dict[str, int] = {}
    for minute in got.per_minute:
        for message_type, count in minute.counts.items():
            summed[message_type] = summed.get(message_type, 0) + count
    assert summed == EXPECTED_TOTALS


async def test_a_message_delivered_twice_is_counted_once(shop: Shop) -> None:
    captured = {"order_id": "o1", "payment_id": "p1", "amount": 500, "currency": "CNY"}
    confirmed = {
        "order_id": "o1", "user_id": "u1", "items": _lines(("A", 2)), "total": 2000,
        "currency": "CNY", "address": ADDRESS,
    }  # fmt: skip
    for _ in range(2):  # a producer's retry: the same message id again
        await shop.publish(events.PAYMENT_CAPTURED, "pay-o1", **captured, method="card")
        await shop.publish(events.ORDER_CONFIRMED, "confirm-o1", **confirmed)
        await shop.publish(events.PRODUCT_VIEWED, "view-1", sku="A", user_id="u1")
    got = await shop.report()
    assert got.totals_by_type == {
        "order.confirmed": 1, "payment.captured": 1, "product.viewed": 1,
    }  # fmt: skip
    assert got.gmv == {"CNY": 500}
    assert got.top_products == [TopProduct("A", 2)]
    assert got.top_viewed == [TopViewed("A", 1)]
    assert (got.unique_buyers, got.unique_viewers) == (1, 1)


async def test_messages_count_in_the_minute_they_were_published(shop: Shop) -> None:
    now = time.time_ns() // 1_000_000
    captured = {"order_id": "o1", "payment_id": "p1", "currency": "CNY", "method": "card"}
    ten_minutes_ago, three_hours_ago = now - 10 * 60_000, now - 3 * 3_600_000
    await shop.publish(events.PAYMENT_CAPTURED, _id_at(ten_minutes_ago), **captured, amount=100)
    await shop.publish(events.PAYMENT_CAPTURED, _id_at(three_hours_ago), **captured, amount=900)
    got = await shop.report(60)
    assert got.gmv == {"CNY": 1000}
    assert got.gmv_window == {"CNY": 100}
    assert got.totals_by_type == {"payment.captured": 1}
    assert got.funnel_window.orders_placed == got.funnel.orders_placed == 0
    [busy] = [minute for minute in got.per_minute if minute.counts]
    assert busy.minute == buckets.iso(buckets.minute_start(ten_minutes_ago))
    assert (busy.counts, busy.gmv) == ({"payment.captured": 1}, {"CNY": 100})
    assert (await shop.report(240)).gmv_window == {"CNY": 1000}

    bucket = KEYS.state("analytics", "counts", str(buckets.minute_start(ten_minutes_ago)))
    assert 2 * 24 * 3600 - 60 <= await shop.redis.ttl(bucket) <= 2 * 24 * 3600


async def test_every_type_of_every_topic_counts_even_injected_and_unknown_ones(shop: Shop) -> None:
    # As an operator would with redis-cli: no id field, so the entry id dates it.
    data = msgspec.json.encode({"order_id": "o9"}).decode()
    await shop.redis.xadd(KEYS.events("order"), {"type": "order.shipped", "data": data})
    await shop.publish(
        "review.submitted", review_id="r1", sku="A", user_id="u1", rating=5, text="ok"
    )
    await shop.publish("moderation.decided", subject="review", subject_id="r1", allowed=True)
    await shop.publish("inventory.low_stock", sku="A", available=1, threshold=5)
    got = await shop.report()
    assert got.totals_by_type == {
        "inventory.low_stock": 1, "moderation.decided": 1, "order.shipped": 1,
        "review.submitted": 1,
    }  # fmt: skip


async def test_a_capture_that_does_not_match_its_schema_is_dead_lettered(shop: Shop) -> None:
    await shop.publish(events.PAYMENT_CAPTURED, order_id="o1", amount="lots")

    async def dead_lettered() -> bool:
        dead: int = await shop.redis.xlen(KEYS.dlq("analytics"))
        return dead == 1

    await eventually(dead_lettered)
    reply: Report = await shop.rpc.call("analytics.report", {}, response_type=Report)
    assert reply.totals_by_type == {} and reply.gmv == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [({"minutes": 0}, "minutes"), ({"minutes": 1441}, "minutes"), ({"hours": 1}, "unknown field")],
)
async def test_a_malformed_report_request_is_refused(
    shop: Shop, data: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidError, match=message):
        await shop.rpc.call("analytics.report", data)
