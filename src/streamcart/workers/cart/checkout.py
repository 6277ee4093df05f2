"""Checking a cart out: what may leave the cart, and what answers a repeated checkout.

A checkout orders the cart as it reads it, and then takes exactly those lines
out of the cart as it is at the commit: what was added meanwhile stays. A
checkout with an idempotency key is remembered (:class:`CheckedOut`), so a
retry gets the first order back, and the same key for another checkout is a
conflict, as at ``orders.place``.
"""

from __future__ import annotations

import hashlib

import msgspec

from streamcart.bus.context import Context
from streamcart.errors import ConflictError
from streamcart.workers import events


class Checkout(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: str
    payment_method: str
    payment_token: str = ""
    address: events.Address
    # The same key again returns the first order instead of placing another.
    idempotency_key: str = ""


class Placed(msgspec.Struct, frozen=True, kw_only=True):
    """The order a checkout message placed, and the lines it ordered."""

    order: events.OrderAccepted
    items: list[events.ItemRequest]


class CheckedOut(msgspec.Struct, frozen=True, kw_only=True):
    """A checkout made with an idempotency key, kept to answer its retries.

    ``request`` and ``items`` are empty in a record written before they were
    kept: such a record answers every retry with its order.
    """

    order_id: str
    status: str
    request: str = ""  # digest of the payment and address asked for
    items: list[events.ItemRequest] = msgspec.field(default_factory=list)


def ordered(lines: dict[str, str]) -> list[events.ItemRequest]:
    """The cart ``lines`` (sku -> qty) as order lines, by sku."""
    return [events.ItemRequest(sku=sku, qty=int(qty)) for sku, qty in sorted(lines.items())]


def request_digest(msg: Checkout) -> str:
    """What a retry must ask again: payment and address (the key is the same anyway)."""
    request = msgspec.structs.replace(msg, idempotency_key="")
    return hashlib.sha256(msgspec.json.encode(request)).hexdigest()[:32]


def remembered(placed: Placed, msg: Checkout) -> CheckedOut:
    return CheckedOut(
        order_id=placed.order.order_id,
        status=placed.order.status,
        request=request_digest(msg),
        items=placed.items,
    )


def repeated(first: CheckedOut, msg: Checkout, lines: dict[str, str]) -> events.OrderAccepted:
    """The answer to a checkout whose key was used before: the first order, if
    this is that checkout again. The first one took its lines out of the cart,
    so its retry finds them gone (or all of them back, the very same cart);
    a cart with anything else in it, or another payment or address, is
    another checkout.

    Raises:
        ConflictError: the key was used for another checkout.
    """
    if first.request and (
        first.request != request_digest(msg) or (lines and ordered(lines) != first.items)
    ):
        raise ConflictError(
            "this Idempotency-Key was used for another checkout (another cart, payment or "
            "address); use a new key"
        )
    return events.OrderAccepted(order_id=first.order_id, status=first.status)


def take_out(
    ctx: Context, cart: str, lines: dict[str, str], items: list[events.ItemRequest]
) -> None:
    """Take ``items`` out of the cart, whose lines are ``lines`` now: a line
    keeps what it holds above the ordered quantity, and goes when nothing is left."""
    for item in items:
        left = int(lines.get(item.sku, 0)) - item.qty
        if left > 0:
            ctx.tx.hset(cart, item.sku, left)
        else:
            ctx.tx.hdel(cart, item.sku)
