"""Finding products: a browse pages through a listing; a text query
intersects the word sets, the last word matching as a prefix."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from streamcart.workers.catalog.index import listed_as, sku_of, words
from streamcart.workers.catalog.keys import CatalogKeys


async def find(
    redis: Redis, keys: CatalogKeys, q: str, category: str, *, limit: int, offset: int
) -> tuple[list[str], int]:
    """The skus of one page of matches in name-then-sku order, and how many match in all.

    Every word of ``q`` must be in the product's name or description; the
    last may be the start of a word, so results come while the shopper types.
    """
    query = words(q)
    if not query:
        listing = keys.listing(category)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcard(listing)
            pipe.zrange(listing, offset, offset + limit - 1)
            total, members = await pipe.execute()
        return [sku_of(member) for member in members], int(total)
    skus = sorted(await _matching(redis, keys, query))
    if not skus:
        return [], 0
    async with redis.pipeline(transaction=False) as pipe:
        for sku in skus:
            pipe.hmget(keys.product(sku), "name", "category")
        rows = await pipe.execute()
    ordered = sorted(
        listed_as(name, sku)
        for sku, (name, in_category) in zip(skus, rows, strict=True)
        if name is not None and (not category or in_category == category)
    )
    return [sku_of(member) for member in ordered[offset : offset + limit]], len(ordered)


async def _matching(redis: Redis, keys: CatalogKeys, query: list[str]) -> set[str]:
    """The skus holding every word of ``query``, the last as a prefix."""
    *whole, last = query
    prefix = last.encode()
    # 0xff never occurs in UTF-8, so this range holds exactly the words starting with `last`.
    completions = await redis.zrangebylex(keys.vocabulary(), b"[" + prefix, b"(" + prefix + b"\xff")
    if not completions:
        return set()
    # Side by side, not pipelined: a cluster client pipelines no multi-key command.
    lookups = [redis.sunion([keys.token(word) for word in completions])]
    if whole:
        lookups.append(redis.sinter([keys.token(word) for word in whole]))
    found = await asyncio.gather(*lookups)
    return set.intersection(*(set(skus) for skus in found))
