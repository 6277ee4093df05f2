"""An order and the rules of its status: pure, so every transition is testable alone.

Events of the saga arrive on three streams and, with several handlers at
once, in any order; each rule only ever moves an order forward
(``PENDING`` < ``RESERVED`` < ``CONFIRMED`` < ``SHIPPED`` < ``DELIVERED``),
never out of a final status (``REJECTED``, ``PAYMENT_FAILED``, ``CANCELLED``,
``DELIVERED``), and records every step in the timeline.
"""

from __future__ import annotations

import msgspec

from streamcart.workers.events import (
    CANCELLED,
    CONFIRMED,
    DELIVERED,
    PAYMENT_FAILED_STATUS,
    PENDING,
    REJECTED,
    RESERVED,
    SHIPPED,
    Address,
    Line,
)

FINAL = frozenset({REJECTED, PAYMENT_FAILED_STATUS, CANCELLED, DELIVERED})
PROGRESS = (PENDING, RESERVED, CONFIRMED, SHIPPED, DELIVERED)
CANCELLABLE = frozenset({PENDING, RESERVED, CONFIRMED})


class Step(msgspec.Struct, frozen=True):
    status: str
    at: int  # Unix ms


class PaymentView(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # CAPTURED, FAILED, REFUNDED
    amount: int = 0
    refunded: int = 0


class ShipmentView(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # CREATED, DISPATCHED, DELIVERED
    courier: str = ""
    fee: int = 0


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """An order as contract section 5 shows it, plus what the saga needs."""

    order_id: str
    user_id: str
    status: str
    items: list[Line]
    total: int
    currency: str
    payment: PaymentView | None = None
    shipment: ShipmentView | None = None
    timeline: list[Step]
    payment_method: str
    address: Address
    reason: str = ""
    created_at: int
    # A digest of the placement request: a retry with the same idempotency key
    # must ask for the same thing.
    request_digest: str = ""


def move(order: Order, status: str, at: int, *, reason: str = "") -> Order:
    """``order`` in ``status`` if that is a step forward from where it is; else unchanged."""
    if order.status in FINAL or order.status == status:
        return order
    if status in PROGRESS and PROGRESS.index(status) <= PROGRESS.index(order.status):
        return order
    steps = [Step(status, at)]
    if status == DELIVERED and order.status == CONFIRMED:
        steps.insert(0, Step(SHIPPED, at))  # delivered before we heard of the dispatch
    return msgspec.structs.replace(
        order, status=status, timeline=[*order.timeline, *steps], reason=reason or order.reason
    )
