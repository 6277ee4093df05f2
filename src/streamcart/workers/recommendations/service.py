"""The recommendations service: "bought together", "viewed together" and best sellers.

It learns from ``order.confirmed`` (co-purchases, purchase histories, units
sold), ``product.viewed`` (co-views, recent views, view counts) and
``product.created`` / ``product.updated`` (categories), and answers
``recommendations.for_user`` and ``recommendations.for_product``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.workers import events
from streamcart.workers.recommendations import graph, ranking

SERVICE = "recommendations"

Weight = Annotated[float, msgspec.Meta(ge=0)]
Size = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=50)]
Id = Annotated[str, msgspec.Meta(min_length=1)]


class RecommendationSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Live knobs (``streamcart config set recommendations ...``): the ranking
    weights, and how much history and graph is kept and read."""

    bought_with: Weight = 1.0
    viewed_with: Weight = 0.6
    category: Weight = 0.3
    popular: Weight = 0.1
    popular_viewed: Weight = 0.05
    recent_views: Size = 20  # views kept per user; a new view links to these
    history_seeds: Size = 20  # the user's most bought skus that seed a recall
    neighbours: Size = 20  # links read per seed, and best sellers per category
    graph_size: Size = 200  # links kept per sku, the strongest

    def weights(self) -> ranking.Weights:
        return ranking.Weights(
            bought_with=self.bought_with,
            viewed_with=self.viewed_with,
            category=self.category,
            popular=self.popular,
            popular_viewed=self.popular_viewed,
        )


class ForUser(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user_id: Id
    limit: Limit = 10


class ForProduct(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Id
    limit: Limit = 10


class ProductRecommendations(msgspec.Struct, frozen=True):
    items: list[ranking.Item]


def _settings(ctx: Context) -> RecommendationSettings:
    config = ctx.config
    return config if isinstance(config, RecommendationSettings) else RecommendationSettings()


def build(options: ServiceOptions | None = None) -> Service:
    """The recommendations service."""
    service = Service(SERVICE, options=options, settings=RecommendationSettings)

    @service.on(events.ORDER_CONFIRMED)
    async def order_confirmed(msg: events.OrderConfirmed, ctx: Context) -> None:
        units: dict[str, int] = {}
        for line in msg.items:
            if line.qty > 0:
                units[line.sku] = units.get(line.sku, 0) + line.qty
        graph.record_order(ctx, msg.user_id, units, _settings(ctx).graph_size)

    @service.on(events.PRODUCT_VIEWED)
    async def product_viewed(msg: events.ProductViewed, ctx: Context) -> None:
        config = _settings(ctx)
        await graph.record_view(
            ctx,
            msg.user_id or None,
            msg.sku,
            recent_views=config.recent_views,
            graph_size=config.graph_size,
        )

    async def product(msg: events.Product, ctx: Context) -> None:
        created = ctx.message.type == events.PRODUCT_CREATED
        await graph.record_product(ctx, msg.sku, msg.category, created=created)

    service.on(events.PRODUCT_CREATED)(product)
    service.on(events.PRODUCT_UPDATED)(product)

    @service.on("recommendations.for_user")
    async def for_user(msg: ForUser, ctx: Context) -> ranking.Ranked:
        """Neighbours of what the user bought and recently viewed, and best
        sellers of those categories, never what they bought already; popular
        items fill the rest, and are all a user without history gets."""
        config = _settings(ctx)
        history = await graph.history(ctx, msg.user_id, config.recent_views)
        seeds = history.seeds(config.history_seeds)
        around = await graph.neighbourhood(
            ctx, seeds, neighbours=config.neighbours, popular=msg.limit + len(history.bought)
        )
        signals = ranking.recall(seeds, around, config.weights())
        return ranking.rank(signals, exclude=history.bought.keys(), limit=msg.limit)

    @service.on("recommendations.for_product")
    async def for_product(msg: ForProduct, ctx: Context) -> ProductRecommendations:
        """Bought with the sku, viewed with it, then its category's best sellers;
        never the sku itself. Empty for a sku nobody bought or viewed yet."""
        config = _settings(ctx)
        around = await graph.neighbourhood(ctx, [msg.sku], neighbours=config.neighbours)
        signals = ranking.recall([msg.sku], around, config.weights())
        return ProductRecommendations(
            ranking.rank(signals, exclude={msg.sku}, limit=msg.limit).items
        )

    return service
