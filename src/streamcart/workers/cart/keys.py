"""Every key the cart service keeps, all in its own hash slot (built from ``ctx.key``)."""

from __future__ import annotations

from collections.abc import Callable

SERVICE = "cart"


class CartKeys:
    """Key names of the carts' state."""

    __slots__ = ("_key",)

    def __init__(self, key: Callable[..., str]) -> None:
        self._key = key

    def cart(self, user_id: str) -> str:
        """Hash ``sku -> qty``: the user's cart."""
        return self._key("cart", user_id)

    def checkout(self, user_id: str, idempotency_key: str) -> str:
        """The reply to a checkout made with this idempotency key (JSON, expiring)."""
        return self._key("checkout", user_id, idempotency_key)

    def placed(self, message_id: str) -> str:
        """The order a checkout message placed (JSON, expiring): its reruns take
        that order, not what the cart holds by then."""
        return self._key("placed", message_id)
