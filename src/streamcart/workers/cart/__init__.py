"""The cart service: one cart per user, priced by the catalog, checked out into an order."""

from streamcart.workers.cart.rules import CartSettings
from streamcart.workers.cart.service import build

__all__ = ["CartSettings", "build"]
