"""What a cart may hold: its limits, and one currency per cart."""

from __future__ import annotations

import msgspec

from streamcart.errors import InvalidError, NotFoundError
from streamcart.workers.events import Product


class CartSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The service's live-configurable knobs (``streamcart config set cart ...``)."""

    max_lines: int = 50  # distinct skus in one cart
    max_qty: int = 99  # of one sku
    currency: str = "CNY"  # what an empty cart's total of 0 is in
    checkout_memory_s: int = 86_400  # how long a checkout is remembered by its idempotency key


def check_user(user_id: str) -> None:
    """Raises:
    InvalidError: ``user_id`` is empty.
    """
    if not user_id.strip():
        raise InvalidError("user_id must not be empty")


def check_qty(qty: int, *, minimum: int) -> None:
    """Raises:
    InvalidError: ``qty`` is below ``minimum``.
    """
    if qty < minimum:
        raise InvalidError(f"qty must be {minimum} or more, got {qty}")


def check_line(settings: CartSettings, lines: dict[str, str], sku: str, qty: int) -> None:
    """Whether the cart ``lines`` may hold ``qty`` of ``sku``.

    Raises:
        InvalidError: more than ``max_qty`` of the sku, or a new line past ``max_lines``.
    """
    if qty > settings.max_qty:
        raise InvalidError(
            f"qty of {sku!r} would be {qty}; a cart holds at most {settings.max_qty} of a product"
        )
    if sku not in lines and len(lines) >= settings.max_lines:
        raise InvalidError(f"the cart is full: it holds at most {settings.max_lines} products")


def check_buyable(sku: str, found: dict[str, Product]) -> Product:
    """The product ``sku`` among ``found`` (it, and one the cart holds), if it
    is priced in the cart's currency: a cart has one total.

    Raises:
        NotFoundError: the catalog has no such product.
        InvalidError: it is priced in another currency than the cart's products.
    """
    product = found.get(sku)
    if product is None:
        raise NotFoundError(f"no product with sku {sku!r}")
    others = {p.currency for p in found.values() if p.sku != sku}
    if others and product.currency not in others:
        raise InvalidError(
            f"{sku!r} is priced in {product.currency} but the cart is in {others.pop()}"
        )
    return product
