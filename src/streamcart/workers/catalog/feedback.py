"""What others say about a product: the rating summary of its published
reviews, and moderation's verdict on its listing."""

from __future__ import annotations

import msgspec

from streamcart.bus.context import Context
from streamcart.errors import InvalidError
from streamcart.workers.catalog.keys import CatalogKeys
from streamcart.workers.events import ModerationDecided, Review

RATING_MIN, RATING_MAX = 1, 5


class Rating(msgspec.Struct, frozen=True):
    """The mean of a product's published ratings (None before the first) and their count."""

    average: float | None
    count: int


class Flags(msgspec.Struct, frozen=True):
    """Whether moderation flagged the product, and why."""

    flagged: bool = False
    reasons: list[str] = msgspec.field(default_factory=list)


async def count_review(ctx: Context, keys: CatalogKeys, review: Review) -> None:
    """Add a published review to its sku's rating, once per ``review_id``: the
    same review published again, even as a new message, is not counted twice.
    The counted ids are watched, so two deliveries at once cannot both count it.

    Raises:
        InvalidError: the rating is not 1 to 5 (the event is dead-lettered).
    """
    if not RATING_MIN <= review.rating <= RATING_MAX:
        raise InvalidError(
            f"review {review.review_id!r}: rating must be {RATING_MIN} to {RATING_MAX}, "
            f"got {review.rating}"
        )
    rated = keys.rated(review.sku)
    await ctx.watch(rated)
    if await ctx.redis.sismember(rated, review.review_id):
        return
    ctx.tx.sadd(rated, review.review_id)
    ctx.tx.hincrby(keys.rating(review.sku), "sum", review.rating)
    ctx.tx.hincrby(keys.rating(review.sku), "count", 1)


def rating_from(total: str | None, count: str | None) -> Rating:
    """The rating from its stored ``sum`` and ``count`` (both None before any review)."""
    if count is None or total is None:
        return Rating(None, 0)
    return Rating(round(int(total) / int(count), 2), int(count))


def record_verdict(ctx: Context, keys: CatalogKeys, decision: ModerationDecided) -> None:
    """Keep moderation's latest verdict on a product; the last decision wins."""
    flags = Flags(not decision.allowed, decision.reasons)
    ctx.tx.hset(
        keys.verdict(decision.subject_id),
        mapping={"flagged": str(int(flags.flagged)), "reasons": msgspec.json.encode(flags.reasons)},
    )


def flags_from(fields: dict[str, str]) -> Flags:
    """The stored verdict; not flagged when moderation has not decided."""
    if not fields:
        return Flags()
    return Flags(fields["flagged"] == "1", msgspec.json.decode(fields["reasons"], type=list[str]))
