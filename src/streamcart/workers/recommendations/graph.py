"""The service's state: co-purchase and co-view graphs, user histories, popularity.

Every key is in the service's own slot (``ctx.key``) and every write goes
through ``ctx.tx``, so an event's updates land together with its dedup
marker, exactly once. Keys (under ``{<ns>:recommendations}``):

* ``bought-with:<sku>`` / ``viewed-with:<sku>`` sorted sets: neighbour -> how
  many orders held both / how often a user viewed both one shortly after the
  other; only the strongest ``graph_size`` are kept.
* ``bought:<user>`` sorted set: sku -> units the user bought.
* ``viewed:<user>`` list: the user's last ``recent_views`` skus, newest first.
* ``popular`` / ``popular-viewed`` sorted sets: sku -> units sold / views.
* ``product:<sku>`` string: its category (``""`` for none); it exists when known.
* ``category:<name>`` set: the skus of a category.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import msgspec

from streamcart.bus.context import Context
from streamcart.workers.recommendations.ranking import Neighbourhood, Scored

BOUGHT_WITH, VIEWED_WITH = "bought-with", "viewed-with"
POPULAR, POPULAR_VIEWED = "popular", "popular-viewed"


class History(msgspec.Struct, frozen=True):
    """What one user did: units bought per sku (most first), recent views (newest first)."""

    bought: dict[str, float]
    viewed: list[str]

    def seeds(self, most_bought: int) -> list[str]:
        """The skus to recall from: the ``most_bought``, then the recent views, each once."""
        return list(dict.fromkeys([*list(self.bought)[:most_bought], *self.viewed]))


def record_order(ctx: Context, user_id: str, units: Mapping[str, int], graph_size: int) -> None:
    """Link every pair of distinct skus of one order, both ways, and count the units."""
    for sku, qty in units.items():
        ctx.tx.zincrby(ctx.key("bought", user_id), qty, sku)
        ctx.tx.zincrby(ctx.key(POPULAR), qty, sku)
        _link(ctx, BOUGHT_WITH, sku, [other for other in units if other != sku], graph_size)


async def record_view(
    ctx: Context, user_id: str | None, sku: str, *, recent_views: int, graph_size: int
) -> None:
    """Count the view; a user's view of a sku not among their recent views links
    it to those, both ways (looking again at the same items adds nothing).

    "Recent" is the order the views are handled in, which is the shopper's
    order when they browse: views of one user handled at the same moment link
    to each other in either order. The recent views are watched, so two such
    views never both miss the other.
    """
    ctx.tx.zincrby(ctx.key(POPULAR_VIEWED), 1, sku)
    if user_id is None:  # an anonymous view only counts
        return
    viewed = ctx.key("viewed", user_id)
    await ctx.watch(viewed)
    recent: list[str] = await ctx.redis.lrange(viewed, 0, recent_views - 1)
    if sku not in recent:
        _link(ctx, VIEWED_WITH, sku, recent, graph_size)
        for other in recent:
            _link(ctx, VIEWED_WITH, other, [sku], graph_size)
    ctx.tx.lrem(viewed, 0, sku)
    ctx.tx.lpush(viewed, sku)
    ctx.tx.ltrim(viewed, 0, recent_views - 1)


async def record_product(ctx: Context, sku: str, category: str, *, created: bool) -> None:
    """Remember the sku and move it to its (new) category.

    A ``product.created`` for a sku known already is dropped: it was handled
    after a ``product.updated`` of the sku, which is newer.
    """
    product = ctx.key("product", sku)
    await ctx.watch(product)
    known: str | None = await ctx.redis.get(product)
    if known is not None and created:
        return
    ctx.tx.set(product, category)
    if known and known != category:
        ctx.tx.srem(ctx.key("category", known), sku)
    if category:
        ctx.tx.sadd(ctx.key("category", category), sku)


async def history(ctx: Context, user_id: str, recent_views: int) -> History:
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.zrevrange(ctx.key("bought", user_id), 0, -1, withscores=True)
    pipe.lrange(ctx.key("viewed", user_id), 0, recent_views - 1)
    bought, viewed = await pipe.execute()
    return History(dict(bought), viewed)


async def neighbourhood(
    ctx: Context, seeds: Sequence[str], *, neighbours: int, popular: int = 0
) -> Neighbourhood:
    """The ``neighbours`` strongest links of each seed, its category's best
    sellers, and (``popular`` > 0) that many of the shop's most sold and viewed skus."""
    pipe = ctx.redis.pipeline(transaction=False)
    for seed in seeds:
        pipe.zrevrange(ctx.key(BOUGHT_WITH, seed), 0, neighbours - 1, withscores=True)
        pipe.zrevrange(ctx.key(VIEWED_WITH, seed), 0, neighbours - 1, withscores=True)
        pipe.get(ctx.key("product", seed))
    for key in (POPULAR, POPULAR_VIEWED) if popular > 0 else ():
        pipe.zrevrange(ctx.key(key), 0, popular - 1, withscores=True)
    results = await pipe.execute()
    bought_with: dict[str, Scored] = {}
    viewed_with: dict[str, Scored] = {}
    category_of: dict[str, str] = {}
    for index, seed in enumerate(seeds):
        bought_with[seed], viewed_with[seed], category = results[3 * index : 3 * index + 3]
        if category:
            category_of[seed] = category
    sold, viewed = results[3 * len(seeds) :] if popular > 0 else ([], [])
    return Neighbourhood(
        bought_with=bought_with,
        viewed_with=viewed_with,
        category_of=category_of,
        popular_in=await _popular_in(ctx, set(category_of.values()), neighbours),
        popular=sold,
        popular_viewed=viewed,
    )


async def _popular_in(ctx: Context, categories: set[str], top: int) -> dict[str, Scored]:
    """Each category's ``top`` skus by units sold: computed when asked (the
    category's members weighed by ``popular``), so a sku that changes category
    or is sold before the catalog announces it is counted where it is now."""
    if not categories:
        return {}
    # Side by side, not pipelined: a cluster client pipelines no multi-key command.
    results = await asyncio.gather(
        *(
            ctx.redis.zinter(
                {ctx.key(POPULAR): 1, ctx.key("category", category): 0}, withscores=True
            )
            for category in sorted(categories)
        )
    )
    return {
        category: sorted(scored, key=lambda pair: (-pair[1], pair[0]))[:top]
        for category, scored in zip(sorted(categories), results, strict=True)
    }


def _link(ctx: Context, graph: str, sku: str, others: Sequence[str], graph_size: int) -> None:
    if not others:
        return
    key = ctx.key(graph, sku)
    for other in others:
        ctx.tx.zincrby(key, 1, other)
    ctx.tx.zremrangebyrank(key, 0, -graph_size - 1)
