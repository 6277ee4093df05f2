"""The logistics service: a shipment per confirmed order, moved on by delayed messages.

``order.confirmed`` creates the shipment (least-busy courier, fee from weight
and zone, a pickup point in the city) and publishes ``shipment.created``; a
``logistics.dispatch`` command scheduled ``dispatch_after_ms`` later
publishes ``shipment.dispatched`` and schedules ``logistics.deliver``, which
publishes ``shipment.delivered``. ``order.cancelled`` stops a shipment that
has not left yet.
"""

from __future__ import annotations

import time

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import InvalidError, NotFoundError, StreamcartError
from streamcart.workers import events
from streamcart.workers.logistics.fees import LogisticsSettings, Quote, pickup_point, quote
from streamcart.workers.saga import SAGA_RETRIES

SERVICE = "logistics"
CREATED, DISPATCHED, DELIVERED, CANCELLED = "CREATED", "DISPATCHED", "DELIVERED", "CANCELLED"


class Step(msgspec.Struct, frozen=True):
    status: str
    at: int  # Unix ms


class Shipment(msgspec.Struct, frozen=True, kw_only=True):
    shipment_id: str
    order_id: str
    status: str
    courier: str
    fee: int
    currency: str
    zone: str
    weight_g: int
    pickup_point: str | None = None
    timeline: list[Step] = msgspec.field(default_factory=list)


class ByOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: str


class QuoteRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    weight_g: int
    zone: str


class Weights(msgspec.Struct, frozen=True):
    items: list[events.Product]


def build(options: ServiceOptions | None = None) -> Service:
    """The logistics service."""
    service = Service(SERVICE, options=options or SAGA_RETRIES, settings=LogisticsSettings)

    def settings_of(ctx: Context) -> LogisticsSettings:
        settings: LogisticsSettings = ctx.config or LogisticsSettings()
        return settings

    async def weight_of(ctx: Context, lines: list[events.Line]) -> int:
        """The parcel's weight from the catalog; a default per unit when it cannot say."""
        default = settings_of(ctx).default_weight_g
        try:
            found = await ctx.call(
                "catalog.get_many", {"skus": [line.sku for line in lines]},
                timeout=2.0, response_type=Weights,
            )  # fmt: skip
            weights = {product.sku: product.weight_g for product in found.items}
        except StreamcartError as exc:
            ctx.logger.warning("catalog unavailable for weights (%s); using defaults", exc)
            weights = {}
        return sum(line.qty * (weights.get(line.sku) or default) for line in lines)

    async def least_busy(ctx: Context, couriers: list[str]) -> str:
        load = await ctx.redis.hmget(ctx.key("courier-load"), couriers)
        return min(zip(couriers, load, strict=True), key=lambda pair: int(pair[1] or 0))[0]

    @service.on(events.ORDER_CONFIRMED)
    async def on_confirmed(msg: events.OrderConfirmed, ctx: Context) -> None:
        key = ctx.key("shipment", msg.order_id)
        if await ctx.redis.exists(key):
            return
        settings = settings_of(ctx)
        fee = quote(settings, await weight_of(ctx, msg.items), msg.address.zone)
        courier = await least_busy(ctx, settings.couriers)
        point = pickup_point(settings, msg.address.city, msg.order_id)
        shipment = Shipment(
            shipment_id=f"shp_{msg.order_id}", order_id=msg.order_id, status=CREATED,
            courier=courier, fee=fee.fee, currency=fee.currency, zone=fee.zone,
            weight_g=fee.weight_g, pickup_point=point, timeline=[Step(CREATED, _now_ms())],
        )  # fmt: skip
        ctx.tx.set(key, msgspec.json.encode(shipment))
        ctx.tx.hincrby(ctx.key("courier-load"), courier, 1)
        created = events.ShipmentCreated(
            order_id=msg.order_id, shipment_id=shipment.shipment_id, courier=courier,
            fee=shipment.fee, currency=shipment.currency,
        )  # fmt: skip
        ctx.publish(events.SHIPMENT_CREATED, created, key=msg.order_id)
        ctx.send_later(
            SERVICE, "logistics.dispatch", ByOrder(msg.order_id),
            delay_ms=settings.dispatch_after_ms, key=msg.order_id,
        )  # fmt: skip

    async def advance(ctx: Context, order_id: str, expected: str, to: str) -> Shipment | None:
        """Move the order's shipment from ``expected`` to ``to``; ``None`` if it is elsewhere."""
        key = ctx.key("shipment", order_id)
        await ctx.watch(key)
        raw = await ctx.redis.get(key)
        if raw is None:
            return None
        shipment = msgspec.json.decode(raw, type=Shipment)
        if shipment.status != expected:
            return None
        moved = msgspec.structs.replace(
            shipment, status=to, timeline=[*shipment.timeline, Step(to, _now_ms())]
        )
        ctx.tx.set(key, msgspec.json.encode(moved))
        return moved

    @service.on("logistics.dispatch")
    async def dispatch(msg: ByOrder, ctx: Context) -> None:
        shipment = await advance(ctx, msg.order_id, CREATED, DISPATCHED)
        if shipment is None:
            return
        progress = events.ShipmentProgress(order_id=msg.order_id, shipment_id=shipment.shipment_id)
        ctx.publish(events.SHIPMENT_DISPATCHED, progress, key=msg.order_id)
        ctx.send_later(
            SERVICE, "logistics.deliver", msg, delay_ms=settings_of(ctx).deliver_after_ms,
            key=msg.order_id,
        )  # fmt: skip

    @service.on("logistics.deliver")
    async def deliver(msg: ByOrder, ctx: Context) -> None:
        shipment = await advance(ctx, msg.order_id, DISPATCHED, DELIVERED)
        if shipment is None:
            return
        ctx.tx.hincrby(ctx.key("courier-load"), shipment.courier, -1)
        progress = events.ShipmentProgress(order_id=msg.order_id, shipment_id=shipment.shipment_id)
        ctx.publish(events.SHIPMENT_DELIVERED, progress, key=msg.order_id)

    @service.on(events.ORDER_CANCELLED)
    async def on_cancelled(msg: events.OrderCancelled, ctx: Context) -> None:
        shipment = await advance(ctx, msg.order_id, CREATED, CANCELLED)
        if shipment is not None:
            ctx.tx.hincrby(ctx.key("courier-load"), shipment.courier, -1)

    @service.on("logistics.get_shipment")
    async def get_shipment(msg: ByOrder, ctx: Context) -> Shipment:
        """The order's shipment.

        Raises:
            NotFoundError: no shipment for the order (not confirmed yet, say).
        """
        raw = await ctx.redis.get(ctx.key("shipment", msg.order_id))
        if raw is None:
            raise NotFoundError(f"no shipment for order {msg.order_id!r}")
        return msgspec.json.decode(raw, type=Shipment)

    @service.on("logistics.quote")
    async def get_quote(msg: QuoteRequest, ctx: Context) -> Quote:
        """The fee of a parcel of ``weight_g`` to ``zone``.

        Raises:
            InvalidError: a weight that is not 1 g..1,000 kg, or no zone.
        """
        if not 1 <= msg.weight_g <= 1_000_000:
            raise InvalidError(f"weight_g must be 1..1,000,000, got {msg.weight_g}")
        if not msg.zone.strip():
            raise InvalidError("zone must not be empty")
        return quote(settings_of(ctx), msg.weight_g, msg.zone.strip())

    return service


def _now_ms() -> int:
    return int(time.time() * 1000)
