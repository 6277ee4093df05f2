"""The saga's invariants (contract section 4), checked against what the services keep.

Run once the system is quiet. It reads every order, reservation, stock level,
payment and shipment, the payment provider's ledger, every consumer group and
every dead-letter stream, and returns what is wrong, in words; an empty list
means every invariant holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable

import msgspec
from redis.asyncio import Redis

from streamcart.bus.delayed import decode_member
from streamcart.bus.keys import Keys
from streamcart.workers import events
from streamcart.workers.inventory.stock import reservation_key
from streamcart.workers.orders.model import Order
from streamcart.workers.orders.timeout import SAGA_TIMEOUT
from streamcart.workers.payments.provider import SandboxProvider

_IN_FLIGHT = frozenset({events.PENDING, events.RESERVED, events.CONFIRMED, events.SHIPPED})
_FAILED = frozenset({events.REJECTED, events.PAYMENT_FAILED_STATUS, events.CANCELLED})
# Each status, and the reservation states that can explain it.
_RESERVATIONS = {
    events.REJECTED: {"rejected"},
    events.PAYMENT_FAILED_STATUS: {"released"},
    events.CONFIRMED: {"reserved"},
    events.SHIPPED: {"committed"},
    events.DELIVERED: {"committed"},
    # Cancelled before the reservation, after it, or (a cancel racing the
    # dispatch) after the goods left.
    events.CANCELLED: {"cancelled", "released", "rejected", "committed"},
}


async def check_invariants(
    redis: Redis, keys: Keys, *, acknowledged: Iterable[str] = ()
) -> list[str]:
    """Every violated invariant, one sentence each.

    ``acknowledged`` are ids of orders their clients were told about (a 202): each
    one the services no longer know is lost, and said so.
    """
    problems: list[str] = []
    orders = [order async for order in _orders(redis, keys)]
    problems += _lost(orders, acknowledged)
    ledger = await SandboxProvider(redis, keys).ledger()
    problems += _money(orders, ledger)
    problems += _kept_money(orders, ledger)
    for order in orders:
        problems += await _order(redis, keys, order)
    problems += await _stock(redis, keys)
    problems += await _queues(redis, keys)
    return problems


async def _orders(redis: Redis, keys: Keys) -> AsyncIterator[Order]:
    async for key in redis.scan_iter(match=keys.state("orders", "order", "*"), count=1_000):
        raw = await redis.get(key)
        if raw is not None:
            yield msgspec.json.decode(raw, type=Order)


async def _order(redis: Redis, keys: Keys, order: Order) -> list[str]:
    where = f"order {order.order_id} ({order.status})"
    problems = []
    if not order.timeline or order.timeline[-1].status != order.status:
        problems.append(f"{where}: its timeline does not end in its status")
    if order.status in _IN_FLIGHT:
        problems.append(f"{where}: still in flight although the system is quiet")
    reservation = await redis.hget(reservation_key(keys, order.order_id), "state") or "none"
    allowed = _RESERVATIONS.get(order.status)
    if allowed is not None and reservation not in allowed:
        problems.append(f"{where}: its reservation is {reservation}")
    paid = order.payment.status if order.payment else None
    if order.status in (events.CONFIRMED, events.SHIPPED, events.DELIVERED) and paid != "CAPTURED":
        problems.append(f"{where}: payment is {paid}")
    if order.status == events.CANCELLED and paid == "CAPTURED":
        problems.append(f"{where}: captured and never refunded")
    if order.status == events.DELIVERED:
        raw = await redis.get(keys.state("logistics", "shipment", order.order_id))
        shipped = msgspec.json.decode(raw) if raw is not None else {}
        if shipped.get("status") != "DELIVERED":
            problems.append(f"{where}: logistics has not delivered it")
    return problems


def _lost(orders: list[Order], acknowledged: Iterable[str]) -> list[str]:
    """An order a client got a 202 for must outlive any crash."""
    known = {order.order_id for order in orders}
    return [
        f"order {order_id} was acknowledged to its client but is gone"
        for order_id in sorted(set(acknowledged) - known)
    ]


def _money(orders: list[Order], ledger: list[dict[str, str]]) -> list[str]:
    """At most one capture per order, of its total; refunds only of captures."""
    problems = []
    totals = {order.order_id: order.total for order in orders}
    captures = Counter(entry["key"] for entry in ledger if entry["kind"] == "capture")
    for entry in ledger:
        key, amount = entry["key"], int(entry["amount"])
        if entry["kind"] == "capture":
            if captures[key] > 1:
                problems.append(f"order {key} was charged {captures[key]} times")
            if totals.get(key) != amount:
                problems.append(f"order {key} was charged {amount}, its total is {totals.get(key)}")
        elif entry["kind"] == "refund":
            order_id = key.removeprefix("refund:")
            if not captures[order_id]:
                problems.append(f"order {order_id} was refunded without a capture")
    return problems


async def _stock(redis: Redis, keys: Keys) -> list[str]:
    problems = []
    async for key in redis.scan_iter(match=keys.state("inventory", "stock", "*"), count=1_000):
        level = {field: int(value) for field, value in (await redis.hgetall(key)).items()}
        sku = key.rsplit(":", 1)[-1]
        available, reserved = level.get("available", 0), level.get("reserved", 0)
        shipped, added = level.get("shipped", 0), level.get("added", 0)
        if min(available, reserved, shipped) < 0:
            problems.append(f"sku {sku}: a negative count {level}")
        if available + reserved + shipped != added:
            problems.append(f"sku {sku}: available + reserved + shipped != added ({level})")
        if reserved:
            problems.append(f"sku {sku}: {reserved} still reserved although the system is quiet")
    return problems


async def _queues(redis: Redis, keys: Keys) -> list[str]:
    """Nothing pending in any group; nothing dead-lettered."""
    problems = []
    for pattern in (f"{keys.namespace}:inbox:*", f"{keys.namespace}:events:*"):
        async for stream in redis.scan_iter(match=pattern, count=1_000, _type="stream"):
            for group in await redis.xinfo_groups(stream):
                if int(group["pending"]):
                    problems.append(f"{stream}: {group['pending']} pending in {group['name']}")
    async for dlq in redis.scan_iter(match=keys.dlq("*"), count=1_000, _type="stream"):
        if count := await redis.xlen(dlq):
            problems.append(f"{dlq}: {count} dead letters")
    for stream in await redis.smembers(keys.delayed_index()):
        if waiting := await _delayed_work(redis, keys, stream):
            problems.append(f"{stream}: {waiting} delayed messages still waiting")
    return problems


async def _delayed_work(redis: Redis, keys: Keys, stream: str) -> int:
    """Delayed messages still to do. An order's saga timeout waits its whole
    ``saga_timeout_s`` whatever becomes of the order, so it does not count:
    an order it would still act on is in flight, which :func:`_order` reports."""
    if stream != keys.inbox("orders"):
        return int(await redis.zcard(keys.delayed(stream)))
    members = await redis.zrange(keys.delayed(stream), 0, -1)
    return sum((decode_member(m) or {}).get("type") != SAGA_TIMEOUT for m in members)


def _kept_money(orders: list[Order], ledger: list[dict[str, str]]) -> list[str]:
    """An order that did not go through keeps none of the shopper's money."""
    captured = {entry["key"] for entry in ledger if entry["kind"] == "capture"}
    refunded = {entry["key"].removeprefix("refund:") for entry in ledger
                if entry["kind"] == "refund"}  # fmt: skip
    return [
        f"order {order.order_id} ({order.status}) was charged and never refunded"
        for order in orders
        if order.status in _FAILED and order.order_id in captured - refunded
    ]
