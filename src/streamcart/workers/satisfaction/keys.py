"""Every key of the satisfaction service, all in its own hash slot.

A free-form part (a sku, a user id) always comes last, or JSON-encoded when
there are two, so that no two subjects can share a key.
"""

from __future__ import annotations

import msgspec

from streamcart.bus.context import Context

# Fields of the counters hash behind the summary.
PENDING, PUBLISHED, REJECTED = "reviews_pending", "reviews_published", "reviews_rejected"
RATING_SUM = "rating_sum"  # over published reviews
SENT, ANSWERED = "surveys_sent", "surveys_answered"
PROMOTERS, PASSIVES, DETRACTORS = "promoters", "passives", "detractors"


def review(ctx: Context, review_id: str) -> str:
    """String: the review as JSON."""
    return ctx.key("review", review_id)


def reviewer(ctx: Context, sku: str, user_id: str) -> str:
    """String: the id of this user's review of this sku, while it is not rejected."""
    return ctx.key("reviewer", msgspec.json.encode([sku, user_id]).decode())


def published(ctx: Context, sku: str) -> str:
    """Sorted set: the sku's published review ids, scored by submission time (Unix ms)."""
    return ctx.key("published", sku)


def rating_sums(ctx: Context) -> str:
    """Hash: sku -> the sum of the ratings of its published reviews."""
    return ctx.key("rating-sums")


def survey(ctx: Context, survey_id: str) -> str:
    """String: the survey as JSON."""
    return ctx.key("survey", survey_id)


def order_survey(ctx: Context, order_id: str) -> str:
    """String: the id of the survey sent for this order."""
    return ctx.key("order-survey", order_id)


def feedback(ctx: Context) -> str:
    """List: the latest survey comments as JSON, newest first, capped."""
    return ctx.key("feedback")


def counts(ctx: Context) -> str:
    """Hash: the counters of the summary (the field names above)."""
    return ctx.key("counts")
