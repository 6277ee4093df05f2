"""The moderation service: verdicts on texts, and decisions on reviews and products.

``moderation.check`` answers the verdict on any text. Every ``review.submitted``
and ``product.created`` gets a decision, recorded (``moderation.get_decision``
answers it) and announced as ``moderation.decided``, for the subject's owner to
act on: satisfaction publishes or rejects the review.
"""

from __future__ import annotations

import time

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import InvalidError, NotFoundError
from streamcart.workers import events
from streamcart.workers.moderation.classifier import Policy, Scores, Verdict, default_classifier

SERVICE = "moderation"
REVIEW, PRODUCT = "review", "product"
SUBJECTS = (REVIEW, PRODUCT)
TEXT_MAX = 10_000


class ModerationSettings(Policy, frozen=True, kw_only=True):
    """The live policy (``streamcart config set moderation spam_threshold 0.9``):
    thresholds on the model's scores, and whether links are refused."""


class Check(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str


class GetDecision(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: str  # "review" | "product"
    subject_id: str


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded decision on a subject: the latest one wins."""

    subject: str
    subject_id: str
    allowed: bool
    reasons: list[str]
    scores: Scores
    at: int  # Unix ms


def _verdict(text: str, ctx: Context) -> Verdict:
    """The verdict under the policy in force for this message."""
    policy: Policy = ctx.config if ctx.config is not None else ModerationSettings()
    return default_classifier().check(text, policy)


def _decide(ctx: Context, subject: str, subject_id: str, text: str) -> None:
    """Record the verdict on a subject and announce it."""
    verdict = _verdict(text, ctx)
    decision = Decision(
        subject=subject,
        subject_id=subject_id,
        allowed=verdict.allowed,
        reasons=verdict.reasons,
        scores=verdict.scores,
        at=time.time_ns() // 1_000_000,
    )
    ctx.tx.set(ctx.key("decision", subject, subject_id), msgspec.json.encode(decision))
    decided = events.ModerationDecided(
        subject=subject, subject_id=subject_id, allowed=verdict.allowed, reasons=verdict.reasons
    )
    ctx.publish(events.MODERATION_DECIDED, decided, key=subject_id)


def build(options: ServiceOptions | None = None) -> Service:
    """The moderation service."""
    service = Service(SERVICE, options=options, settings=ModerationSettings)

    @service.on("moderation.check")
    async def check(msg: Check, ctx: Context) -> Verdict:
        """The verdict on a text; nothing is recorded.

        Raises:
            InvalidError: the text is longer than 10,000 characters.
        """
        if len(msg.text) > TEXT_MAX:
            raise InvalidError(f"text must be at most {TEXT_MAX} characters, got {len(msg.text)}")
        return _verdict(msg.text, ctx)

    @service.on(events.REVIEW_SUBMITTED)
    async def review_submitted(msg: events.Review, ctx: Context) -> None:
        _decide(ctx, REVIEW, msg.review_id, msg.text)

    @service.on(events.PRODUCT_CREATED)
    async def product_created(msg: events.Product, ctx: Context) -> None:
        _decide(ctx, PRODUCT, msg.sku, f"{msg.name}\n{msg.description}")

    @service.on("moderation.get_decision")
    async def get_decision(msg: GetDecision, ctx: Context) -> Decision:
        """The latest decision on a review or a product.

        Raises:
            InvalidError: the subject is neither "review" nor "product".
            NotFoundError: no decision on that subject yet.
        """
        if msg.subject not in SUBJECTS:
            raise InvalidError(f"subject must be one of {SUBJECTS}, got {msg.subject!r}")
        stored = await ctx.redis.get(ctx.key("decision", msg.subject, msg.subject_id))
        if stored is None:
            raise NotFoundError(f"no decision on {msg.subject} {msg.subject_id!r}")
        return msgspec.json.decode(stored, type=Decision)

    return service
