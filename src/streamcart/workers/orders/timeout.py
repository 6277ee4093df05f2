"""The saga's timeout: an order not confirmed within ``saga_timeout_s`` is given up.

Placing an order schedules an ``orders.saga_timeout`` message for that long
after, committed with the order itself, so neither a crash nor a restart loses
it (the delayed set is in Redis). When it comes due, an order still PENDING or
RESERVED (a step of the saga stuck in an outage, or its message dead-lettered)
is cancelled with the reason, and ``order.cancelled`` makes the other services
compensate: inventory releases the stock (or never reserves it), payments
makes sure the charge never happens, and refunds one that lands after all. An
order that moved on meanwhile is left alone: the order key is watched, so the
timeout and the saga's own steps take turns on it.
"""

from __future__ import annotations

import time

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.service import Service
from streamcart.workers import events
from streamcart.workers.orders.model import Order, move

SAGA_TIMEOUT = "orders.saga_timeout"
# What the saga still waited for, by the status it was stuck in.
_WAITING_FOR = {events.PENDING: "the stock reservation", events.RESERVED: "the payment"}


class SagaTimeout(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    order_id: str
    after_s: float


def schedule(ctx: Context, order_id: str, after_s: float) -> None:
    """Have ``order_id`` checked ``after_s`` from now, if this handler commits."""
    timeout = SagaTimeout(order_id=order_id, after_s=after_s)
    ctx.send_later(
        ctx.service.name, SAGA_TIMEOUT, timeout, delay_ms=round(after_s * 1000), key=order_id
    )


def register(service: Service) -> None:
    """Add the timeout's handler to the orders service."""

    @service.on(SAGA_TIMEOUT)
    async def on_saga_timeout(msg: SagaTimeout, ctx: Context) -> None:
        key = ctx.key("order", msg.order_id)
        await ctx.watch(key)  # a step of the saga committed meanwhile: look again
        raw = await ctx.redis.get(key)
        if raw is None:
            return
        order = msgspec.json.decode(raw, type=Order)
        waiting_for = _WAITING_FOR.get(order.status)
        if waiting_for is None:
            return  # confirmed, or over, in time
        reason = (
            f"not confirmed within {msg.after_s:g} s (saga_timeout_s) "
            f"while waiting for {waiting_for}"
        )
        cancelled = move(order, events.CANCELLED, int(time.time() * 1000), reason=reason)
        ctx.tx.set(key, msgspec.json.encode(cancelled))
        event = events.OrderCancelled(
            order_id=order.order_id, user_id=order.user_id, reason=reason, items=order.items
        )
        ctx.publish(events.ORDER_CANCELLED, event, key=order.order_id)
