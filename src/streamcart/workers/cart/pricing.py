"""A cart as the shopper sees it: each line priced by the catalog at read time."""

from __future__ import annotations

import msgspec

from streamcart.bus.context import Context
from streamcart.workers.events import Product

CATALOG_GET_MANY = "catalog.get_many"


class CatalogProducts(msgspec.Struct, frozen=True, kw_only=True):
    """The reply of ``catalog.get_many``."""

    items: list[Product]


class CartItem(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    qty: int
    unit_price: int  # minor units
    name: str


class CartView(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    items: list[CartItem]
    total: int  # minor units
    currency: str


async def lookup(ctx: Context, skus: list[str]) -> dict[str, Product]:
    """The catalog's products among ``skus``, by sku; one call for all of them.

    Raises:
        UnavailableError, RpcTimeoutError: the catalog did not answer.
    """
    if not skus:
        return {}
    reply: CatalogProducts = await ctx.call(
        CATALOG_GET_MANY, {"skus": skus}, response_type=CatalogProducts
    )
    return {product.sku: product for product in reply.items}


def priced(
    user_id: str, lines: dict[str, str], products: dict[str, Product], currency: str
) -> CartView:
    """The cart ``lines`` (sku -> qty) at the current prices, by sku.

    ``currency`` is the empty cart's. A sku the catalog no longer knows cannot
    be priced or ordered, so it is left out.
    """
    items = [
        CartItem(sku=sku, qty=int(qty), unit_price=products[sku].price, name=products[sku].name)
        for sku, qty in sorted(lines.items())
        if sku in products
    ]
    if items:
        currency = products[items[0].sku].currency
    return CartView(
        user_id=user_id,
        items=items,
        total=sum(item.qty * item.unit_price for item in items),
        currency=currency,
    )
