"""Every key the catalog keeps, all in its own hash slot.

Built from ``ctx.key`` (or ``functools.partial(keys.state, "catalog")`` outside
a handler), so a commit touching several of them stays in one Redis Cluster slot.
"""

from __future__ import annotations

from collections.abc import Callable

SERVICE = "catalog"


class CatalogKeys:
    """Key names of the catalog's state."""

    __slots__ = ("_key",)

    def __init__(self, key: Callable[..., str]) -> None:
        self._key = key

    def product(self, sku: str) -> str:
        """Hash: the product's fields (:class:`streamcart.workers.events.Product`)."""
        return self._key("product", sku)

    def listing(self, category: str = "") -> str:
        """Sorted set of every product (or one category's), ordered by name then sku."""
        return self._key("category", category) if category else self._key("products")

    def token(self, token: str) -> str:
        """Set: the skus whose name or description holds this word."""
        return self._key("token", token)

    def vocabulary(self) -> str:
        """Sorted set (lexicographic) of every indexed word, for prefix matching."""
        return self._key("vocabulary")

    def rating(self, sku: str) -> str:
        """Hash ``{sum, count}``: the sku's published review ratings."""
        return self._key("rating", sku)

    def rated(self, sku: str) -> str:
        """Set: the review ids already counted in the sku's rating."""
        return self._key("rated", sku)

    def verdict(self, sku: str) -> str:
        """Hash ``{flagged, reasons}``: moderation's last verdict on the product."""
        return self._key("verdict", sku)
