"""The search index, kept beside each product in the same commit.

A product's words are the case-folded word tokens of its name and
description; ``token:<word>`` sets map each word to its skus. The
vocabulary (every indexed word, lexicographic) turns a query's last word
into a prefix. Listings (all products, and one per category) are sorted sets
with every score 0, so their members ``<name>\\0<sku>`` sort by name then sku:
a browse pages through them without sorting anything.
"""

from __future__ import annotations

import re

from streamcart.bus.context import Context, Tx
from streamcart.workers.catalog.keys import CatalogKeys
from streamcart.workers.events import Product

_WORD = re.compile(r"\w+")
_SEPARATOR = "\x00"  # sorts before any printable character, which is all a name holds


def words(text: str) -> list[str]:
    """The distinct case-folded words of ``text``, in order."""
    return list(dict.fromkeys(_WORD.findall(text.casefold())))


def product_words(product: Product) -> set[str]:
    return set(words(f"{product.name} {product.description}"))


def listed_as(name: str, sku: str) -> str:
    """A product's member in the listings: the sort key of name-then-sku order."""
    return f"{name.casefold()}{_SEPARATOR}{sku}"


def sku_of(member: str) -> str:
    return member.rpartition(_SEPARATOR)[2]


def add(tx: Tx, keys: CatalogKeys, product: Product) -> None:
    """Make a new (or re-indexed) product findable."""
    found = sorted(product_words(product))
    for word in found:
        tx.sadd(keys.token(word), product.sku)
    if found:
        tx.zadd(keys.vocabulary(), dict.fromkeys(found, 0))
    member = {listed_as(product.name, product.sku): 0}
    tx.zadd(keys.listing(), member)
    if product.category:
        tx.zadd(keys.listing(product.category), member)


async def replace(ctx: Context, keys: CatalogKeys, old: Product, new: Product) -> None:
    """Re-index a product whose name, description or category may have changed.

    Its old words stop finding it, and a word no product holds any more
    leaves the vocabulary. The sets of those words are watched: a product
    created meanwhile with one of them fails this commit, and the retry keeps
    the word.
    """
    dropped = sorted(product_words(old) - product_words(new))
    if dropped:
        token_keys = [keys.token(word) for word in dropped]
        await ctx.watch(*token_keys)
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for key in token_keys:
                pipe.scard(key)
            sizes = await pipe.execute()
        for key in token_keys:
            ctx.tx.srem(key, old.sku)
        unused = [word for word, size in zip(dropped, sizes, strict=True) if size <= 1]
        if unused:
            ctx.tx.zrem(keys.vocabulary(), *unused)
    member = listed_as(old.name, old.sku)
    ctx.tx.zrem(keys.listing(), member)
    if old.category:
        ctx.tx.zrem(keys.listing(old.category), member)
    add(ctx.tx, keys, new)
