"""Post-delivery surveys: one per completed order, answered once by its buyer.

The answer is the Net Promoter question ("how likely are you to recommend
us, 0 to 10"): 9-10 is a promoter, 7-8 a passive, 0-6 a detractor, and the
NPS is the percentage of promoters minus the percentage of detractors.
"""

from __future__ import annotations

import uuid

import msgspec
from redis.asyncio import Redis

from streamcart.bus.context import Context
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from streamcart.workers import events
from streamcart.workers.satisfaction import keys
from streamcart.workers.satisfaction.messages import (
    AnswerSurvey,
    Feedback,
    SatisfactionSettings,
    SurveyRecord,
)
from streamcart.workers.satisfaction.reviews import now_ms

SCORE_MIN, SCORE_MAX = 0, 10
COMMENT_MAX = 2000


def group_of(score: int) -> str:
    """The counter a score adds to: promoters, passives or detractors."""
    if score >= 9:
        return keys.PROMOTERS
    return keys.PASSIVES if score >= 7 else keys.DETRACTORS


def net_promoter_score(promoters: int, detractors: int, answered: int) -> float | None:
    """% promoters - % detractors, to one decimal; None before any answer."""
    if not answered:
        return None
    return round(100 * (promoters - detractors) / answered, 1)


async def load_survey(redis: Redis, key: str) -> SurveyRecord | None:
    stored = await redis.get(key)
    return None if stored is None else msgspec.json.decode(stored, type=SurveyRecord)


def add_survey_handlers(service: Service) -> None:
    """Register the survey sender (on ``order.completed``) and the answer request."""

    @service.on(events.ORDER_COMPLETED)
    async def order_completed(msg: events.OrderCompleted, ctx: Context) -> None:
        """Send the buyer a survey (``survey.sent``), once per order however
        often the event is delivered."""
        sent = keys.order_survey(ctx, msg.order_id)
        await ctx.watch(sent)
        if await ctx.redis.exists(sent):
            return
        survey = SurveyRecord(
            survey_id=uuid.uuid4().hex, order_id=msg.order_id, user_id=msg.user_id, sent_at=now_ms()
        )
        ctx.tx.set(sent, survey.survey_id)
        ctx.tx.set(keys.survey(ctx, survey.survey_id), msgspec.json.encode(survey))
        ctx.tx.hincrby(keys.counts(ctx), keys.SENT, 1)
        event = events.SurveySent(
            survey_id=survey.survey_id, order_id=survey.order_id, user_id=survey.user_id
        )
        ctx.publish(events.SURVEY_SENT, event, key=survey.order_id)

    @service.on("satisfaction.answer_survey")
    async def answer_survey(msg: AnswerSurvey, ctx: Context) -> SurveyRecord:
        """Record the buyer's score and comment; the answered survey is the reply.

        Raises:
            InvalidError: a score outside 0..10 or a comment over 2000 characters.
            NotFoundError: no survey has this id.
            ForbiddenError: the survey was sent to another user.
            ConflictError: the survey is answered already.
        """
        if not SCORE_MIN <= msg.score <= SCORE_MAX:
            raise InvalidError(f"score must be {SCORE_MIN} to {SCORE_MAX}, got {msg.score}")
        comment = msg.comment.strip()
        if len(comment) > COMMENT_MAX:
            raise InvalidError(f"comment must be at most {COMMENT_MAX} characters")
        key = keys.survey(ctx, msg.survey_id)
        await ctx.watch(key)  # two concurrent answers: one commits, one conflicts
        survey = await load_survey(ctx.redis, key)
        if survey is None:
            raise NotFoundError(f"no survey {msg.survey_id!r}")
        if survey.user_id != msg.user_id:
            raise ForbiddenError(f"survey {msg.survey_id!r} was not sent to {msg.user_id!r}")
        if survey.answered_at is not None:
            raise ConflictError(f"survey {msg.survey_id!r} is answered already")
        answered_at = now_ms()
        survey = msgspec.structs.replace(
            survey, score=msg.score, comment=comment, answered_at=answered_at
        )
        ctx.tx.set(key, msgspec.json.encode(survey))
        ctx.tx.hincrby(keys.counts(ctx), keys.ANSWERED, 1)
        ctx.tx.hincrby(keys.counts(ctx), group_of(msg.score), 1)
        if comment:
            settings: SatisfactionSettings = ctx.config or SatisfactionSettings()
            note = Feedback(
                survey_id=survey.survey_id, score=msg.score, comment=comment, at=answered_at
            )
            ctx.tx.lpush(keys.feedback(ctx), msgspec.json.encode(note))
            ctx.tx.ltrim(keys.feedback(ctx), 0, settings.recent_feedback - 1)
        return survey
