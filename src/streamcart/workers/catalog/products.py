"""Products: what makes one valid, and how it is stored (one hash per sku)."""

from __future__ import annotations

import re

import msgspec
from redis.asyncio import Redis

from streamcart.errors import InvalidError
from streamcart.workers.catalog.keys import CatalogKeys
from streamcart.workers.events import Product

SKU_MAX, NAME_MAX, DESCRIPTION_MAX, CATEGORY_MAX = 64, 200, 5000, 64
# A sku names keys and URL paths: keep it to characters that need no escaping.
_SKU = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{SKU_MAX - 1}}}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def check_sku(sku: str) -> None:
    """Raises:
    InvalidError: ``sku`` is not 1 to 64 letters, digits, '.', '_' or '-'.
    """
    if not _SKU.match(sku):
        raise InvalidError(
            f"sku must be 1 to {SKU_MAX} letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit; got {sku!r}"
        )


def check_product(product: Product) -> Product:
    """``product`` with its text fields trimmed, once every field is valid.

    Raises:
        InvalidError: the first field that is not valid, named, with why.
    """
    check_sku(product.sku)
    name = product.name.strip()
    if not 1 <= len(name) <= NAME_MAX or not name.isprintable():
        raise InvalidError(f"name must be 1 to {NAME_MAX} printable characters")
    description = product.description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidError(
            f"description must be at most {DESCRIPTION_MAX} characters, got {len(description)}"
        )
    if product.price <= 0:
        raise InvalidError(
            f"price must be a positive integer in minor units (cents), got {product.price}"
        )
    if not _CURRENCY.match(product.currency):
        raise InvalidError(
            f"currency must be a 3-letter upper-case code such as 'CNY', got {product.currency!r}"
        )
    category = product.category.strip()
    if len(category) > CATEGORY_MAX or not category.isprintable():
        raise InvalidError(f"category must be at most {CATEGORY_MAX} printable characters")
    if product.weight_g < 0:
        raise InvalidError(f"weight_g must be 0 or more, got {product.weight_g}")
    return msgspec.structs.replace(product, name=name, description=description, category=category)


def product_fields(product: Product) -> dict[str, str]:
    """The product as the fields of its hash."""
    return {name: str(value) for name, value in msgspec.structs.asdict(product).items()}


def product_from(fields: dict[str, str]) -> Product | None:
    """The product stored in these hash fields; None for an empty (missing) hash."""
    return msgspec.convert(fields, Product, strict=False) if fields else None


async def load_products(redis: Redis, keys: CatalogKeys, skus: list[str]) -> list[Product]:
    """The stored products among ``skus``, in their order; unknown skus are left out."""
    if not skus:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for sku in skus:
            pipe.hgetall(keys.product(sku))
        rows = await pipe.execute()
    return [product for fields in rows if (product := product_from(fields)) is not None]
