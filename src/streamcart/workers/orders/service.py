"""The orders service: places orders, follows the saga, cancels and lists them.

``orders.place`` prices the lines from the catalog and publishes
``order.placed``; the saga's events (``inventory.*``, ``payment.*``,
``shipment.*``) move the order through :mod:`.model`'s rules, publishing
``order.rejected``, ``order.confirmed`` and ``order.completed``;
``orders.cancel`` publishes ``order.cancelled``, which the other services
compensate (stock released, payment refunded, shipment stopped).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Annotated

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, InvalidError, NotFoundError
from streamcart.workers import events
from streamcart.workers.events import Line, PlaceOrder
from streamcart.workers.orders import timeout
from streamcart.workers.orders.model import (
    CANCELLABLE,
    Order,
    PaymentView,
    ShipmentView,
    Step,
    move,
)
from streamcart.workers.saga import SAGA_RETRIES

SERVICE = "orders"
MAX_LINES, MAX_QTY = 50, 99
_IDEMPOTENCY = uuid.UUID("6f1d2f4e-8c43-4b8e-9d1a-0c2b7e51a9c3")


class OrdersSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Live knobs (``streamcart config set orders max_total 1000000``)."""

    max_total: int = 10_000_000  # minor units
    # An order not CONFIRMED this long after it was placed is cancelled, and
    # compensated, with the reason (see .timeout).
    saga_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 900.0


class ByOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: str


class Cancel(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    order_id: str
    reason: str = "cancelled by the customer"


class ListOrders(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    user_id: str
    limit: int = 20
    offset: int = 0


class OrderList(msgspec.Struct, frozen=True):
    items: list[Order]
    total: int


class Products(msgspec.Struct, frozen=True):
    items: list[events.Product]


def order_id_for(msg: PlaceOrder, message_id: str) -> str:
    """With an idempotency key, the same id for every retry of that key by that
    user; else the placing message's own id (unique, and time-ordered)."""
    if msg.idempotency_key:
        return uuid.uuid5(_IDEMPOTENCY, f"{msg.user_id}\n{msg.idempotency_key}").hex
    return message_id


def digest(msg: PlaceOrder) -> str:
    request = msgspec.structs.replace(msg, idempotency_key="")
    return hashlib.sha256(msgspec.json.encode(request)).hexdigest()[:32]


def check(msg: PlaceOrder) -> None:
    """Raises InvalidError for a request no catalog could make an order of."""
    if not msg.user_id:
        raise InvalidError("user_id is required")
    if not 1 <= len(msg.items) <= MAX_LINES:
        raise InvalidError(f"an order has 1..{MAX_LINES} lines, got {len(msg.items)}")
    skus = [item.sku for item in msg.items]
    if len(set(skus)) != len(skus):
        raise InvalidError("each sku may appear on one line only; add up the quantities")
    for item in msg.items:
        if not 1 <= item.qty <= MAX_QTY:
            raise InvalidError(f"qty of {item.sku!r} must be 1..{MAX_QTY}, got {item.qty}")
    if msg.payment_method not in events.PAYMENT_METHODS:
        raise InvalidError(
            f"payment_method must be one of {', '.join(events.PAYMENT_METHODS)}, "
            f"got {msg.payment_method!r}"
        )
    for field in ("name", "line1", "city", "zone", "postcode"):
        if not getattr(msg.address, field).strip():
            raise InvalidError(f"address.{field} must not be empty")


def build(options: ServiceOptions | None = None) -> Service:
    """The orders service."""
    service = Service(SERVICE, options=options or SAGA_RETRIES, settings=OrdersSettings)
    timeout.register(service)

    async def load(ctx: Context, order_id: str) -> Order | None:
        raw = await ctx.redis.get(ctx.key("order", order_id))
        return None if raw is None else msgspec.json.decode(raw, type=Order)

    def save(ctx: Context, order: Order) -> None:
        ctx.tx.set(ctx.key("order", order.order_id), msgspec.json.encode(order))

    def accepted(order: Order, request_digest: str) -> events.OrderAccepted:
        if order.request_digest != request_digest:
            raise ConflictError(
                "this Idempotency-Key was used for a different order; use a new key"
            )
        return events.OrderAccepted(order_id=order.order_id, status=order.status)

    async def price(ctx: Context, msg: PlaceOrder) -> tuple[list[Line], str]:
        found = await ctx.call(
            "catalog.get_many", {"skus": [item.sku for item in msg.items]},
            timeout=5.0, response_type=Products,
        )  # fmt: skip
        products = {product.sku: product for product in found.items}
        missing = [item.sku for item in msg.items if item.sku not in products]
        if missing:
            raise InvalidError(f"unknown sku: {', '.join(missing)}")
        currencies = {products[item.sku].currency for item in msg.items}
        if len(currencies) != 1:
            raise InvalidError(f"the products are priced in several currencies: {currencies}")
        lines = [
            Line(sku=item.sku, qty=item.qty, unit_price=products[item.sku].price)
            for item in msg.items
        ]
        return lines, currencies.pop()

    @service.on(events.ORDERS_PLACE)
    async def place(msg: PlaceOrder, ctx: Context) -> events.OrderAccepted:
        """A new PENDING order, or the one an earlier try with the same key placed.

        Raises:
            InvalidError: bad lines, payment method or address, or an unknown sku.
            ConflictError: the idempotency key was used for another request.
        """
        order_id = order_id_for(msg, ctx.message.id)
        request_digest = digest(msg)
        key = ctx.key("order", order_id)
        if msg.idempotency_key:
            existing = await load(ctx, order_id)
            if existing is None:
                await ctx.watch(key)  # two first tries at once: one commits, one reruns
                existing = await load(ctx, order_id)
            if existing is not None:
                return accepted(existing, request_digest)
        check(msg)
        lines, currency = await price(ctx, msg)
        total = sum(line.qty * line.unit_price for line in lines)
        settings: OrdersSettings = ctx.config or OrdersSettings()
        if total > settings.max_total:
            raise InvalidError(f"the total {total} is over the limit of {settings.max_total}")
        now = _now_ms()
        order = Order(
            order_id=order_id, user_id=msg.user_id, status=events.PENDING, items=lines,
            total=total, currency=currency, timeline=[Step(events.PENDING, now)],
            payment_method=msg.payment_method, address=msg.address, created_at=now,
            request_digest=request_digest,
        )  # fmt: skip
        save(ctx, order)
        ctx.tx.zadd(ctx.key("user-orders", msg.user_id), {order_id: now})
        placed = events.OrderPlaced(
            order_id=order_id, user_id=msg.user_id, items=lines, total=total,
            currency=currency, payment_method=msg.payment_method,
            payment_token=msg.payment_token, address=msg.address,
        )  # fmt: skip
        ctx.publish(events.ORDER_PLACED, placed, key=order_id)
        timeout.schedule(ctx, order_id, settings.saga_timeout_s)
        return events.OrderAccepted(order_id=order_id, status=events.PENDING)

    @service.on("orders.get")
    async def get(msg: ByOrder, ctx: Context) -> Order:
        """The order, with its timeline.

        Raises:
            NotFoundError: no such order.
        """
        order = await load(ctx, msg.order_id)
        if order is None:
            raise NotFoundError(f"no order {msg.order_id!r}")
        return order

    @service.on("orders.list")
    async def list_orders(msg: ListOrders, ctx: Context) -> OrderList:
        """The user's orders, newest first."""
        if not 1 <= msg.limit <= 100 or msg.offset < 0:
            raise InvalidError("limit must be 1..100 and offset at least 0")
        index = ctx.key("user-orders", msg.user_id)
        ids = await ctx.redis.zrevrange(index, msg.offset, msg.offset + msg.limit - 1)
        total = await ctx.redis.zcard(index)
        raw = await ctx.redis.mget([ctx.key("order", order_id) for order_id in ids]) if ids else []
        items = [msgspec.json.decode(r, type=Order) for r in raw if r is not None]
        return OrderList(items, total)

    @service.on("orders.cancel")
    async def cancel(msg: Cancel, ctx: Context) -> Order:
        """Cancel an order that has not been shipped; stock and money follow.

        Raises:
            NotFoundError: no such order.
            ConflictError: it is shipped, delivered, or over already.
        """
        key = ctx.key("order", msg.order_id)
        await ctx.watch(key)
        order = await load(ctx, msg.order_id)
        if order is None:
            raise NotFoundError(f"no order {msg.order_id!r}")
        if order.status not in CANCELLABLE:
            raise ConflictError(f"the order is {order.status}; it can no longer be cancelled")
        cancelled = move(order, events.CANCELLED, _now_ms(), reason=msg.reason[:200])
        save(ctx, cancelled)
        event = events.OrderCancelled(
            order_id=order.order_id, user_id=order.user_id, reason=cancelled.reason,
            items=order.items,
        )  # fmt: skip
        ctx.publish(events.ORDER_CANCELLED, event, key=order.order_id)
        return cancelled

    async def update(ctx: Context, order_id: str) -> Order | None:
        """The order, watched: a concurrent change to it makes this handler rerun."""
        await ctx.watch(ctx.key("order", order_id))
        order = await load(ctx, order_id)
        if order is None:
            ctx.logger.warning("%s for unknown order %s ignored", ctx.message.type, order_id)
        return order

    @service.on(events.INVENTORY_RESERVED)
    async def on_reserved(msg: events.InventoryReserved, ctx: Context) -> None:
        order = await update(ctx, msg.order_id)
        if order is not None:
            save(ctx, move(order, events.RESERVED, _now_ms()))

    @service.on(events.INVENTORY_REJECTED)
    async def on_rejected(msg: events.InventoryRejected, ctx: Context) -> None:
        order = await update(ctx, msg.order_id)
        if order is None:
            return
        rejected = move(order, events.REJECTED, _now_ms(), reason=msg.reason)
        save(ctx, rejected)
        if rejected.status == events.REJECTED and order.status != events.REJECTED:
            event = events.OrderRejected(
                order_id=order.order_id, user_id=order.user_id, reason=msg.reason
            )
            ctx.publish(events.ORDER_REJECTED, event, key=order.order_id)

    @service.on(events.PAYMENT_CAPTURED)
    async def on_captured(msg: events.PaymentCaptured, ctx: Context) -> None:
        order = await update(ctx, msg.order_id)
        if order is None:
            return
        paid = PaymentView(status="CAPTURED", amount=msg.amount)
        if order.payment is not None and order.payment.status == "REFUNDED":
            paid = order.payment  # the refund of a late capture was heard first
        confirmed = move(msgspec.structs.replace(order, payment=paid), events.CONFIRMED, _now_ms())
        save(ctx, confirmed)
        if confirmed.status == events.CONFIRMED and order.status != events.CONFIRMED:
            event = events.OrderConfirmed(
                order_id=order.order_id, user_id=order.user_id, items=order.items,
                total=order.total, currency=order.currency, address=order.address,
            )  # fmt: skip
            ctx.publish(events.ORDER_CONFIRMED, event, key=order.order_id)

    @service.on(events.PAYMENT_FAILED)
    async def on_payment_failed(msg: events.PaymentFailed, ctx: Context) -> None:
        order = await update(ctx, msg.order_id)
        if order is not None:
            failed = msgspec.structs.replace(order, payment=PaymentView(status="FAILED"))
            save(ctx, move(failed, events.PAYMENT_FAILED_STATUS, _now_ms(), reason=msg.reason))

    @service.on(events.PAYMENT_REFUNDED)
    async def on_refunded(msg: events.PaymentRefunded, ctx: Context) -> None:
        order = await update(ctx, msg.order_id)
        if order is not None:
            before = order.payment or PaymentView(status="CAPTURED", amount=msg.amount)
            refunded = msgspec.structs.replace(before, status="REFUNDED", refunded=msg.amount)
            save(ctx, msgspec.structs.replace(order, payment=refunded))

    @service.on(events.SHIPMENT_CREATED)
    async def on_shipment_created(msg: events.ShipmentCreated, ctx: Context) -> None:
        order = await update(ctx, msg.order_id)
        if order is not None:
            shipment = ShipmentView(status="CREATED", courier=msg.courier, fee=msg.fee)
            if order.shipment is not None and order.shipment.status != "CREATED":
                shipment = msgspec.structs.replace(order.shipment, courier=msg.courier, fee=msg.fee)
            save(ctx, msgspec.structs.replace(order, shipment=shipment))

    @service.on(events.SHIPMENT_DISPATCHED)
    async def on_dispatched(msg: events.ShipmentProgress, ctx: Context) -> None:
        order = await update(ctx, msg.order_id)
        if order is None:
            return
        shipment = order.shipment or ShipmentView(status="CREATED")
        if shipment.status == "CREATED":
            shipment = msgspec.structs.replace(shipment, status="DISPATCHED")
        shipped = move(msgspec.structs.replace(order, shipment=shipment), events.SHIPPED, _now_ms())
        save(ctx, shipped)

    @service.on(events.SHIPMENT_DELIVERED)
    async def on_delivered(msg: events.ShipmentProgress, ctx: Context) -> None:
        order = await update(ctx, msg.order_id)
        if order is None:
            return
        shipment = msgspec.structs.replace(
            order.shipment or ShipmentView(status="CREATED"), status="DELIVERED"
        )
        delivered = move(
            msgspec.structs.replace(order, shipment=shipment), events.DELIVERED, _now_ms()
        )
        save(ctx, delivered)
        if delivered.status == events.DELIVERED and order.status != events.DELIVERED:
            event = events.OrderCompleted(
                order_id=order.order_id, user_id=order.user_id, items=order.items
            )
            ctx.publish(events.ORDER_COMPLETED, event, key=order.order_id)

    return service


def _now_ms() -> int:
    return int(time.time() * 1000)
