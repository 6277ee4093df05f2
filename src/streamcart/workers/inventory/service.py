"""The inventory service: stock on hand, reservations for orders, their release and commit.

Its part of the order saga (contract section 4): ``order.placed`` reserves every
line or none (``inventory.reserved`` / ``inventory.rejected``);
``payment.failed`` and ``order.cancelled`` release a held reservation
(``inventory.released``); ``shipment.dispatched`` commits it
(``inventory.committed``). Stock moves only inside the two scripts of
:mod:`.stock`, which also make every step safe to run twice.
"""

from __future__ import annotations

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import InvalidError
from streamcart.workers import events
from streamcart.workers.inventory import stock
from streamcart.workers.inventory.stock import SERVICE, Level, check_sku
from streamcart.workers.saga import SAGA_RETRIES

MAX_ADD = 1_000_000


class InventorySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Live knobs (``streamcart config set inventory low_stock_threshold 3``)."""

    low_stock_threshold: int = 5


class AddStock(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: str
    qty: int


class GetStock(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    sku: str = ""
    skus: list[str] = msgspec.field(default_factory=list)


class Levels(msgspec.Struct, frozen=True):
    items: list[Level]


def build(options: ServiceOptions | None = None) -> Service:
    """The inventory service."""
    service = Service(SERVICE, options=options or SAGA_RETRIES, settings=InventorySettings)

    def threshold(ctx: Context) -> int:
        settings = ctx.config or InventorySettings()
        return int(settings.low_stock_threshold)

    @service.on("inventory.add_stock")
    async def add_stock(msg: AddStock, ctx: Context) -> Level:
        """Receive ``qty`` units of ``sku`` (exactly once per message).

        Raises:
            InvalidError: a bad sku, or a quantity that is not 1..1,000,000.
        """
        check_sku(msg.sku)
        if not 1 <= msg.qty <= MAX_ADD:
            raise InvalidError(f"qty must be 1..{MAX_ADD:,}, got {msg.qty}")
        key = stock.stock_key(ctx.keys, msg.sku)
        ctx.tx.hincrby(key, "available", msg.qty)
        ctx.tx.hincrby(key, "added", msg.qty)
        [before] = await stock.levels(ctx.redis, ctx.keys, [msg.sku])
        return Level(
            sku=msg.sku, available=before.available + msg.qty, reserved=before.reserved,
            shipped=before.shipped, added=before.added + msg.qty,
        )  # fmt: skip

    @service.on("inventory.get_stock")
    async def get_stock(msg: GetStock, ctx: Context) -> Levels:
        """Stock of ``sku`` or of each of ``skus`` (zero for an unknown sku)."""
        skus = [check_sku(sku) for sku in ([msg.sku] if msg.sku else []) + msg.skus]
        if not skus:
            raise InvalidError("give a sku or a list of skus")
        return Levels(await stock.levels(ctx.redis, ctx.keys, skus))

    @service.on(events.ORDER_PLACED)
    async def on_order_placed(msg: events.OrderPlaced, ctx: Context) -> None:
        reservation = await stock.reserve(
            ctx.redis, ctx.keys, msg.order_id, msg.items, low_threshold=threshold(ctx)
        )
        if reservation.state == stock.RESERVED:
            reserved = events.InventoryReserved(
                order_id=msg.order_id, user_id=msg.user_id, items=msg.items, total=msg.total,
                currency=msg.currency, payment_method=msg.payment_method,
                payment_token=msg.payment_token,
            )  # fmt: skip
            ctx.publish(events.INVENTORY_RESERVED, reserved, key=msg.order_id)
            for sku, available in reservation.low.items():
                low = events.LowStock(sku=sku, available=available, threshold=threshold(ctx))
                ctx.publish(events.INVENTORY_LOW_STOCK, low, key=sku)
        elif reservation.state == stock.REJECTED:
            shortages = reservation.shortages
            reason = "out of stock: " + ", ".join(
                f"{s.sku} (wanted {s.requested}, {s.available} available)" for s in shortages
            )
            rejected = events.InventoryRejected(
                order_id=msg.order_id, reason=reason, shortages=shortages
            )
            ctx.publish(events.INVENTORY_REJECTED, rejected, key=msg.order_id)
        # "cancelled": the order was cancelled before it reached us; nothing to hold.

    async def release(order_id: str, ctx: Context) -> None:
        settled = await stock.settle(ctx.redis, ctx.keys, order_id, "release")
        if settled.changed and settled.state == stock.RELEASED:
            released = events.InventoryReleased(order_id=order_id)
            ctx.publish(events.INVENTORY_RELEASED, released, key=order_id)

    @service.on(events.PAYMENT_FAILED)
    async def on_payment_failed(msg: events.PaymentFailed, ctx: Context) -> None:
        await release(msg.order_id, ctx)

    @service.on(events.ORDER_CANCELLED)
    async def on_order_cancelled(msg: events.OrderCancelled, ctx: Context) -> None:
        await release(msg.order_id, ctx)

    @service.on(events.SHIPMENT_DISPATCHED)
    async def on_dispatched(msg: events.ShipmentProgress, ctx: Context) -> None:
        settled = await stock.settle(ctx.redis, ctx.keys, msg.order_id, "commit")
        if settled.changed:
            committed = events.InventoryCommitted(order_id=msg.order_id)
            ctx.publish(events.INVENTORY_COMMITTED, committed, key=msg.order_id)

    return service
