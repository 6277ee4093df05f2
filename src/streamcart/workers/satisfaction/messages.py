"""What the satisfaction service is asked, what it answers, and what it stores."""

from __future__ import annotations

import msgspec

# Review statuses: every review starts PENDING until moderation decides.
PENDING, PUBLISHED, REJECTED = "PENDING", "PUBLISHED", "REJECTED"


class SatisfactionSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The live knobs (``streamcart config set satisfaction recent_feedback 20``)."""

    # Survey comments kept for, and shown by, the summary.
    recent_feedback: int = 10
    # The largest page satisfaction.get_reviews serves.
    max_page: int = 100

    def __post_init__(self) -> None:
        if self.recent_feedback < 1 or self.max_page < 1:
            raise ValueError("recent_feedback and max_page must be at least 1")


# -- reviews --------------------------------------------------------------------
class SubmitReview(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user_id: str
    sku: str
    rating: int  # 1..5
    text: str  # 1..2000 characters once trimmed


class Submitted(msgspec.Struct, frozen=True):
    review_id: str
    status: str


class GetReview(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    review_id: str


class ReviewRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A review as stored, and as satisfaction.get_review answers it."""

    review_id: str
    sku: str
    user_id: str
    rating: int
    text: str
    status: str
    reasons: list[str] = msgspec.field(default_factory=list)  # why it was rejected
    at: int  # submitted, Unix ms
    decided_at: int | None = None  # Unix ms


class GetReviews(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: str
    limit: int = 20
    offset: int = 0


class PublishedReview(msgspec.Struct, frozen=True, kw_only=True):
    review_id: str
    user_id: str
    rating: int
    text: str
    at: int  # Unix ms


class ReviewPage(msgspec.Struct, frozen=True, kw_only=True):
    """Published reviews of a sku, newest first, with the sku's average rating."""

    items: list[PublishedReview]
    total: int
    average_rating: float | None  # None while nothing is published


# -- surveys --------------------------------------------------------------------
class AnswerSurvey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    survey_id: str
    user_id: str
    score: int  # 0..10: how likely the user is to recommend the shop
    comment: str = ""


class SurveyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A survey as stored, and as satisfaction.answer_survey answers it."""

    survey_id: str
    order_id: str
    user_id: str
    sent_at: int  # Unix ms
    score: int | None = None
    comment: str = ""
    answered_at: int | None = None  # Unix ms


class Feedback(msgspec.Struct, frozen=True, kw_only=True):
    """A survey comment, as the summary lists it."""

    survey_id: str
    score: int
    comment: str
    at: int  # Unix ms


# -- summary --------------------------------------------------------------------
class GetSummary(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class ReviewStats(msgspec.Struct, frozen=True, kw_only=True):
    published: int
    rejected: int
    pending: int
    average_rating: float | None  # over every published review


class SurveyStats(msgspec.Struct, frozen=True, kw_only=True):
    sent: int
    answered: int
    promoters: int  # scores 9-10
    passives: int  # 7-8
    detractors: int  # 0-6
    nps: float | None  # % promoters - % detractors, -100..100; None before any answer


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    reviews: ReviewStats
    surveys: SurveyStats
    recent_feedback: list[Feedback]  # newest first
