"""Reviews: one per user and sku, held PENDING until moderation decides.

A submitted review is stored and announced (``review.submitted``); the
moderation service's ``moderation.decided`` then publishes it (it counts in
the sku's average rating from then on) or rejects it with the reasons, which
frees the user to write another. A decision on a review decided already
changes nothing, so a repeated decision is harmless.
"""

from __future__ import annotations

import time
import uuid

import msgspec
from redis.asyncio import Redis

from streamcart.bus.connection import transaction
from streamcart.bus.context import Context
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, InvalidError, NotFoundError
from streamcart.workers import events
from streamcart.workers.satisfaction import keys
from streamcart.workers.satisfaction.messages import (
    PENDING,
    PUBLISHED,
    REJECTED,
    GetReview,
    GetReviews,
    PublishedReview,
    ReviewPage,
    ReviewRecord,
    SatisfactionSettings,
    SubmitReview,
    Submitted,
)

RATING_MIN, RATING_MAX = 1, 5
TEXT_MAX = 2000
REVIEW_SUBJECT = "review"


def check_submission(msg: SubmitReview) -> str:
    """The review's text, trimmed.

    Raises:
        InvalidError: an empty user id or sku, a rating outside 1..5, or a text
            that is empty or longer than 2000 characters.
    """
    if not msg.user_id or not msg.sku:
        raise InvalidError("user_id and sku must not be empty")
    if not RATING_MIN <= msg.rating <= RATING_MAX:
        raise InvalidError(f"rating must be {RATING_MIN} to {RATING_MAX}, got {msg.rating}")
    text = msg.text.strip()
    if not 1 <= len(text) <= TEXT_MAX:
        raise InvalidError(f"text must be 1 to {TEXT_MAX} characters long, got {len(text)}")
    return text


def average(total: int, count: int) -> float | None:
    """The average rating, to two decimals; None when nothing is rated."""
    return round(total / count, 2) if count else None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def load_review(redis: Redis, key: str) -> ReviewRecord | None:
    stored = await redis.get(key)
    return None if stored is None else msgspec.json.decode(stored, type=ReviewRecord)


def _event(review: ReviewRecord) -> events.Review:
    return events.Review(
        review_id=review.review_id,
        sku=review.sku,
        user_id=review.user_id,
        rating=review.rating,
        text=review.text,
    )


def add_review_handlers(service: Service) -> None:
    """Register the review requests and the moderation decision handler."""

    @service.on("satisfaction.submit_review")
    async def submit_review(msg: SubmitReview, ctx: Context) -> Submitted:
        """Store a PENDING review and send it to moderation (``review.submitted``).

        Raises:
            InvalidError: a field is not valid (see :func:`check_submission`).
            ConflictError: the user has a pending or published review of this sku.
        """
        text = check_submission(msg)
        slot = keys.reviewer(ctx, msg.sku, msg.user_id)
        await ctx.watch(slot)  # two concurrent submissions: one commits, one conflicts
        if await ctx.redis.exists(slot):
            raise ConflictError(f"user {msg.user_id!r} has reviewed {msg.sku!r} already")
        review = ReviewRecord(
            review_id=uuid.uuid4().hex,
            sku=msg.sku,
            user_id=msg.user_id,
            rating=msg.rating,
            text=text,
            status=PENDING,
            at=now_ms(),
        )
        ctx.tx.set(slot, review.review_id)
        ctx.tx.set(keys.review(ctx, review.review_id), msgspec.json.encode(review))
        ctx.tx.hincrby(keys.counts(ctx), keys.PENDING, 1)
        ctx.publish(events.REVIEW_SUBMITTED, _event(review), key=review.review_id)
        return Submitted(review.review_id, review.status)

    @service.on(events.MODERATION_DECIDED)
    async def decided(msg: events.ModerationDecided, ctx: Context) -> None:
        """Publish or reject a pending review; other subjects are not ours."""
        if msg.subject != REVIEW_SUBJECT:
            return
        key = keys.review(ctx, msg.subject_id)
        await ctx.watch(key)
        review = await load_review(ctx.redis, key)
        if review is None or review.status != PENDING:
            return
        counts = keys.counts(ctx)
        ctx.tx.hincrby(counts, keys.PENDING, -1)
        if msg.allowed:
            review = msgspec.structs.replace(review, status=PUBLISHED, decided_at=now_ms())
            ctx.tx.zadd(keys.published(ctx, review.sku), {review.review_id: review.at})
            ctx.tx.hincrby(keys.rating_sums(ctx), review.sku, review.rating)
            ctx.tx.hincrby(counts, keys.PUBLISHED, 1)
            ctx.tx.hincrby(counts, keys.RATING_SUM, review.rating)
            ctx.publish(events.REVIEW_PUBLISHED, _event(review), key=review.review_id)
        else:
            review = msgspec.structs.replace(
                review, status=REJECTED, reasons=msg.reasons, decided_at=now_ms()
            )
            ctx.tx.delete(keys.reviewer(ctx, review.sku, review.user_id))
            ctx.tx.hincrby(counts, keys.REJECTED, 1)
            rejected = events.ReviewRejected(
                review_id=review.review_id,
                sku=review.sku,
                user_id=review.user_id,
                reasons=review.reasons,
            )
            ctx.publish(events.REVIEW_REJECTED, rejected, key=review.review_id)
        ctx.tx.set(key, msgspec.json.encode(review))

    @service.on("satisfaction.get_review")
    async def get_review(msg: GetReview, ctx: Context) -> ReviewRecord:
        """A review in any status, with the reasons of a rejection.

        Raises:
            NotFoundError: no review has this id.
        """
        review = await load_review(ctx.redis, keys.review(ctx, msg.review_id))
        if review is None:
            raise NotFoundError(f"no review {msg.review_id!r}")
        return review

    @service.on("satisfaction.get_reviews")
    async def get_reviews(msg: GetReviews, ctx: Context) -> ReviewPage:
        """A page of the sku's published reviews, newest first, and its average rating.

        Raises:
            InvalidError: ``limit`` outside 1..``max_page`` or a negative ``offset``.
        """
        settings: SatisfactionSettings = ctx.config or SatisfactionSettings()
        if not 1 <= msg.limit <= settings.max_page or msg.offset < 0:
            raise InvalidError(
                f"limit must be 1 to {settings.max_page} and offset at least 0, "
                f"got limit={msg.limit}, offset={msg.offset}"
            )
        published = keys.published(ctx, msg.sku)
        # One transaction, so the page, the total and the sum agree.
        async with await transaction(ctx.redis, published) as pipe:
            pipe.zrevrange(published, msg.offset, msg.offset + msg.limit - 1)
            pipe.zcard(published)
            pipe.hget(keys.rating_sums(ctx), msg.sku)
            ids, total, rating_sum = await pipe.execute()
        stored = await ctx.redis.mget([keys.review(ctx, i) for i in ids]) if ids else []
        items = [
            msgspec.json.decode(raw, type=PublishedReview)
            for raw in stored
            if raw is not None  # never deleted; only a hand-edited database lacks one
        ]
        return ReviewPage(
            items=items, total=total, average_rating=average(int(rating_sum or 0), total)
        )
