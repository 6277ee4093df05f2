"""The logistics service: a shipment per confirmed order, moved on by delayed messages.

``order.confirmed`` creates the shipment (least-busy courier, fee from weight
and zone, a pickup point in the city) and publishes ``shipment.created``; a
``logistics.dispatch`` command scheduled ``dispatch_after_ms`` later
publishes ``shipment.dispatched`` and schedules ``logistics.deliver``, which
publishes ``shipment.delivered``.

A confirmed order is cancelled only through ``logistics.stop_shipment``,
which orders calls first: it stops the shipment (made or not yet) unless the
parcel has left, and ``stop_notice_after_ms`` later publishes
``shipment.cancelled``, so an order whose cancel was cut short after the stop
is cancelled all the same. ``order.cancelled`` stops it too. What each step
reads and writes is in :mod:`.shipments`.
"""

from __future__ import annotations

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, InvalidError, NotFoundError, StreamcartError
from streamcart.workers import events
from streamcart.workers.logistics import shipments
from streamcart.workers.logistics.fees import LogisticsSettings, Quote, pickup_point, quote
from streamcart.workers.logistics.shipments import CREATED, DELIVERED, DISPATCHED, Shipment, Step
from streamcart.workers.saga import SAGA_RETRIES

SERVICE = "logistics"
ANNOUNCE_STOP = "logistics.announce_stop"


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
        found = await shipments.watched(ctx, msg.order_id)
        if found.shipment is not None or found.stopped is not None:
            return  # made before, or the order was cancelled first
        settings = settings_of(ctx)
        fee = quote(settings, await weight_of(ctx, msg.items), msg.address.zone)
        courier = await least_busy(ctx, settings.couriers)
        point = pickup_point(settings, msg.address.city, msg.order_id)
        shipment = Shipment(
            shipment_id=shipments.shipment_id_of(msg.order_id), order_id=msg.order_id,
            status=CREATED, courier=courier, fee=fee.fee, currency=fee.currency, zone=fee.zone,
            weight_g=fee.weight_g, pickup_point=point,
            timeline=[Step(CREATED, shipments.now_ms())],
        )  # fmt: skip
        shipments.save(ctx, shipment)
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

    @service.on("logistics.dispatch")
    async def dispatch(msg: ByOrder, ctx: Context) -> None:
        shipment = await shipments.advance(ctx, msg.order_id, CREATED, DISPATCHED)
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
        shipment = await shipments.advance(ctx, msg.order_id, DISPATCHED, DELIVERED)
        if shipment is None:
            return
        ctx.tx.hincrby(ctx.key("courier-load"), shipment.courier, -1)
        progress = events.ShipmentProgress(order_id=msg.order_id, shipment_id=shipment.shipment_id)
        ctx.publish(events.SHIPMENT_DELIVERED, progress, key=msg.order_id)

    @service.on(events.LOGISTICS_STOP_SHIPMENT)
    async def stop_shipment(msg: events.StopShipment, ctx: Context) -> events.ShipmentCancelled:
        """Stop the order's shipment for good, whether it is made yet or not, so
        the order may be cancelled; asking again answers the same.

        Raises:
            ConflictError: the parcel was dispatched or delivered already.
        """
        if await shipments.stop(ctx, msg.order_id, msg.reason):
            # The cancel that asked cancels the order itself; the notice, later
            # than that cancel needs to commit, is for one cut short after the stop.
            ctx.send_later(
                SERVICE, ANNOUNCE_STOP, ByOrder(msg.order_id),
                delay_ms=settings_of(ctx).stop_notice_after_ms, key=msg.order_id,
            )  # fmt: skip
        return events.ShipmentCancelled(
            order_id=msg.order_id, shipment_id=shipments.shipment_id_of(msg.order_id),
            reason=msg.reason,
        )  # fmt: skip

    @service.on(ANNOUNCE_STOP)
    async def announce_stop(msg: ByOrder, ctx: Context) -> None:
        reason = await ctx.redis.get(shipments.stopped_key(ctx, msg.order_id))
        if reason is None:
            return
        stopped = events.ShipmentCancelled(
            order_id=msg.order_id, shipment_id=shipments.shipment_id_of(msg.order_id),
            reason=reason,
        )  # fmt: skip
        ctx.publish(events.SHIPMENT_CANCELLED, stopped, key=msg.order_id)

    @service.on(events.ORDER_CANCELLED)
    async def on_cancelled(msg: events.OrderCancelled, ctx: Context) -> None:
        try:
            await shipments.stop(ctx, msg.order_id, msg.reason)
        except ConflictError as exc:
            # Orders cancels a confirmed order only after a stop; this one came another way.
            ctx.logger.error("order.cancelled for order %s ignored: %s", msg.order_id, exc)

    @service.on("logistics.get_shipment")
    async def get_shipment(msg: ByOrder, ctx: Context) -> Shipment:
        """The order's shipment.

        Raises:
            NotFoundError: no shipment for the order (not confirmed yet, or
                cancelled before one was made).
        """
        raw, stopped = await ctx.redis.mget(
            shipments.shipment_key(ctx, msg.order_id), shipments.stopped_key(ctx, msg.order_id)
        )
        if raw is None:
            why = "" if stopped is None else ": it was cancelled before one was made"
            raise NotFoundError(f"no shipment for order {msg.order_id!r}{why}")
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
