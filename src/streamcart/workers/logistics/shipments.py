"""A shipment and the steps that move it, each one atomic per order.

Per order, ``shipment:<order_id>`` holds the shipment and ``stopped:<order_id>``
a tombstone: the shipment was stopped for good, with the reason. Each step
watches what it decides on (``ctx.watch``) and writes through ``ctx.tx``, so
two messages about one order (``order.confirmed`` and a stop, a dispatch and
a stop) take effect one after the other whatever order they arrive in: the
later commit fails when the earlier one changed what it read, and its
handler runs again on the new state. A stop that comes first leaves the
tombstone, and no shipment is made after it; a parcel that left first makes
the stop a conflict.
"""

from __future__ import annotations

import time

import msgspec

from streamcart.bus.context import Context
from streamcart.errors import ConflictError

CREATED, DISPATCHED, DELIVERED, CANCELLED = "CREATED", "DISPATCHED", "DELIVERED", "CANCELLED"
LEFT = frozenset({DISPATCHED, DELIVERED})  # the parcel is on its way or there


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


class Watched(msgspec.Struct, frozen=True):
    """What logistics holds for one order, read under a watch."""

    shipment: Shipment | None
    stopped: str | None  # the stop's reason; None when it was never stopped


def shipment_id_of(order_id: str) -> str:
    return f"shp_{order_id}"


def shipment_key(ctx: Context, order_id: str) -> str:
    return ctx.key("shipment", order_id)


def stopped_key(ctx: Context, order_id: str) -> str:
    return ctx.key("stopped", order_id)


def now_ms() -> int:
    return int(time.time() * 1000)


async def watched(ctx: Context, order_id: str) -> Watched:
    """The order's shipment and tombstone; the handler reruns if either changes
    before it commits."""
    keys = shipment_key(ctx, order_id), stopped_key(ctx, order_id)
    await ctx.watch(*keys)
    raw, stopped = await ctx.redis.mget(keys)
    shipment = None if raw is None else msgspec.json.decode(raw, type=Shipment)
    return Watched(shipment, stopped)


def save(ctx: Context, shipment: Shipment) -> None:
    ctx.tx.set(shipment_key(ctx, shipment.order_id), msgspec.json.encode(shipment))


def moved(shipment: Shipment, to: str) -> Shipment:
    timeline = [*shipment.timeline, Step(to, now_ms())]
    return msgspec.structs.replace(shipment, status=to, timeline=timeline)


async def advance(ctx: Context, order_id: str, expected: str, to: str) -> Shipment | None:
    """Move the order's shipment from ``expected`` to ``to``; ``None`` if it is elsewhere
    (a stopped shipment is ``CANCELLED``, so it never moves on)."""
    shipment = (await watched(ctx, order_id)).shipment
    if shipment is None or shipment.status != expected:
        return None
    result = moved(shipment, to)
    save(ctx, result)
    return result


async def stop(ctx: Context, order_id: str, reason: str) -> bool:
    """Stop the order's shipment for good, made or not yet; whether this call
    stopped it (``False``: it was stopped before).

    Raises:
        ConflictError: the parcel was dispatched or delivered already.
    """
    found = await watched(ctx, order_id)
    if found.stopped is not None:
        return False
    shipment = found.shipment
    if shipment is not None and shipment.status in LEFT:
        raise ConflictError(
            f"the parcel of order {order_id} is {shipment.status} already; "
            "the order can no longer be cancelled"
        )
    ctx.tx.set(stopped_key(ctx, order_id), reason)
    if shipment is not None and shipment.status == CREATED:
        save(ctx, moved(shipment, CANCELLED))
        ctx.tx.hincrby(ctx.key("courier-load"), shipment.courier, -1)
    return True
