"""The catalog service: products, their search index and what others say about them.

``catalog.create_product`` and ``catalog.update_product`` keep a product and
its index in one commit and announce it (``product.created`` /
``product.updated``); ``catalog.get_product`` answers a product page and
counts the view (``product.viewed``); ``catalog.search`` and
``catalog.get_many`` read. Published reviews feed each product's rating and
moderation's verdicts flag products.
"""

from __future__ import annotations

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, InvalidError, NotFoundError
from streamcart.workers import events
from streamcart.workers.catalog import feedback, index
from streamcart.workers.catalog.keys import SERVICE, CatalogKeys
from streamcart.workers.catalog.products import (
    check_product,
    check_sku,
    load_products,
    product_fields,
    product_from,
)
from streamcart.workers.catalog.search import find

UPDATABLE = ("name", "description", "price", "category", "weight_g")


class CatalogSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The service's live-configurable knobs (``streamcart config set catalog ...``)."""

    max_page: int = 100  # the largest `limit` of one search
    max_get_many: int = 100  # skus per catalog.get_many


class CreateProduct(events.Product, frozen=True, forbid_unknown_fields=True):
    """``catalog.create_product``: the product's fields exactly."""


class UpdateProduct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``catalog.update_product``: the fields to change; the others stay."""

    sku: str
    name: str | None = None
    description: str | None = None
    price: int | None = None
    category: str | None = None
    weight_g: int | None = None


class GetProduct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    sku: str
    user_id: str | None = None  # the viewer, when signed in


class ProductPage(events.Product, frozen=True, kw_only=True):
    """A product with its rating summary and moderation flag."""

    rating: feedback.Rating
    flagged: bool = False
    flag_reasons: list[str] = msgspec.field(default_factory=list)


class Search(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    q: str = ""
    category: str = ""
    limit: int = 20
    offset: int = 0


class SearchResult(msgspec.Struct, frozen=True, kw_only=True):
    items: list[events.Product]
    total: int
    limit: int
    offset: int


class GetMany(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    skus: list[str]


class Products(msgspec.Struct, frozen=True, kw_only=True):
    """The products found, in the order asked; unknown skus are left out."""

    items: list[events.Product]


def no_such_product(sku: str) -> NotFoundError:
    return NotFoundError(f"no product with sku {sku!r}")


def _settings(ctx: Context) -> CatalogSettings:
    return ctx.config if isinstance(ctx.config, CatalogSettings) else CatalogSettings()


def build(options: ServiceOptions | None = None) -> Service:
    """The catalog service."""
    service = Service(SERVICE, options=options, settings=CatalogSettings)

    @service.on("catalog.create_product")
    async def create_product(msg: CreateProduct, ctx: Context) -> events.Product:
        """A new product, findable at once; its sku must be free.

        Raises:
            InvalidError: a field is not valid (the message names it).
            ConflictError: a product with this sku exists.
        """
        product = check_product(events.Product(**msgspec.structs.asdict(msg)))
        keys = CatalogKeys(ctx.key)
        # A concurrent create of the same sku that commits first fails our
        # commit; the retry then finds the sku taken.
        await ctx.watch(keys.product(product.sku))
        if await ctx.redis.exists(keys.product(product.sku)):
            raise ConflictError(f"a product with sku {product.sku!r} exists already")
        ctx.tx.hset(keys.product(product.sku), mapping=product_fields(product))
        index.add(ctx.tx, keys, product)
        ctx.publish(events.PRODUCT_CREATED, product, key=product.sku)
        return product

    @service.on("catalog.update_product")
    async def update_product(msg: UpdateProduct, ctx: Context) -> events.Product:
        """The product with the given fields changed, and re-indexed.

        Raises:
            InvalidError: nothing to change, or a new value is not valid.
            NotFoundError: no product has this sku.
        """
        changes = {name: value for name in UPDATABLE if (value := getattr(msg, name)) is not None}
        if not changes:
            raise InvalidError(f"give at least one field to change: {', '.join(UPDATABLE)}")
        keys = CatalogKeys(ctx.key)
        await ctx.watch(keys.product(msg.sku))
        old = product_from(await ctx.redis.hgetall(keys.product(msg.sku)))
        if old is None:
            raise no_such_product(msg.sku)
        new = check_product(msgspec.structs.replace(old, **changes))
        ctx.tx.hset(keys.product(new.sku), mapping=product_fields(new))
        await index.replace(ctx, keys, old, new)
        ctx.publish(events.PRODUCT_UPDATED, new, key=new.sku)
        return new

    @service.on("catalog.get_product")
    async def get_product(msg: GetProduct, ctx: Context) -> ProductPage:
        """The product page's catalog part; each call is a page view (``product.viewed``).

        Raises:
            NotFoundError: no product has this sku.
        """
        keys = CatalogKeys(ctx.key)
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.product(msg.sku))
            pipe.hmget(keys.rating(msg.sku), "sum", "count")
            pipe.hgetall(keys.verdict(msg.sku))
            fields, (total, count), verdict = await pipe.execute()
        product = product_from(fields)
        if product is None:
            raise no_such_product(msg.sku)
        flags = feedback.flags_from(verdict)
        ctx.publish(
            events.PRODUCT_VIEWED,
            events.ProductViewed(sku=product.sku, user_id=msg.user_id),
            key=product.sku,
        )
        return ProductPage(
            **msgspec.structs.asdict(product),
            rating=feedback.rating_from(total, count),
            flagged=flags.flagged,
            flag_reasons=flags.reasons,
        )

    @service.on("catalog.search")
    async def search(msg: Search, ctx: Context) -> SearchResult:
        """One page of the products matching ``q`` (all words; the last may be a
        prefix) in ``category`` (any when empty), ordered by name then sku.

        Raises:
            InvalidError: ``limit`` is not 1 to ``max_page``, or ``offset`` is negative.
        """
        max_page = _settings(ctx).max_page
        if not 1 <= msg.limit <= max_page:
            raise InvalidError(f"limit must be 1 to {max_page}, got {msg.limit}")
        if msg.offset < 0:
            raise InvalidError(f"offset must be 0 or more, got {msg.offset}")
        keys = CatalogKeys(ctx.key)
        skus, total = await find(
            ctx.redis, keys, msg.q, msg.category.strip(), limit=msg.limit, offset=msg.offset
        )
        items = await load_products(ctx.redis, keys, skus)
        return SearchResult(items=items, total=total, limit=msg.limit, offset=msg.offset)

    @service.on("catalog.get_many")
    async def get_many(msg: GetMany, ctx: Context) -> Products:
        """The products with these skus, to price many lines in one call.

        Raises:
            InvalidError: more than ``max_get_many`` skus, or a malformed one.
        """
        limit = _settings(ctx).max_get_many
        skus = list(dict.fromkeys(msg.skus))
        if len(skus) > limit:
            raise InvalidError(f"ask for at most {limit} skus at once, got {len(skus)}")
        for sku in skus:
            check_sku(sku)
        return Products(items=await load_products(ctx.redis, CatalogKeys(ctx.key), skus))

    @service.on(events.REVIEW_PUBLISHED)
    async def review_published(msg: events.Review, ctx: Context) -> None:
        await feedback.count_review(ctx, CatalogKeys(ctx.key), msg)

    @service.on(events.MODERATION_DECIDED)
    async def moderation_decided(msg: events.ModerationDecided, ctx: Context) -> None:
        """Only verdicts on products concern the catalog (reviews are satisfaction's)."""
        if msg.subject == "product":
            feedback.record_verdict(ctx, CatalogKeys(ctx.key), msg)

    return service
