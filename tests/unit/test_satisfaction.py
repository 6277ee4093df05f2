"""The satisfaction service on fakeredis, with the real moderation service beside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import msgspec
import pytest

from streamcart.bus.consumer import Consumer
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Publisher
from streamcart.bus.rpc import RpcClient
from streamcart.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from streamcart.workers import events
from streamcart.workers.moderation import service as moderation
from streamcart.workers.satisfaction import service as satisfaction
from streamcart.workers.satisfaction.messages import (
    ReviewPage,
    ReviewRecord,
    ReviewStats,
    Submitted,
    Summary,
    SurveyRecord,
)
from streamcart.workers.satisfaction.surveys import group_of, net_promoter_score
from tests.unit.support import KEYS, eventually, running

FAST = ServiceOptions(block_ms=50, retry_initial_ms=5)
KIND = "Sturdy teapot, pours without dripping."


class Shop:
    """Satisfaction and moderation running, with a client to call them."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis, rpc: RpcClient, consumer: Consumer) -> None:
        self.redis = redis
        self.rpc = rpc
        self.consumer = consumer  # satisfaction's

    async def submit(self, user_id: str, sku: str, rating: int, text: str) -> str:
        reply: Submitted = await self.rpc.call(
            "satisfaction.submit_review",
            {"user_id": user_id, "sku": sku, "rating": rating, "text": text},
            response_type=Submitted,
        )
        assert reply.status == "PENDING"
        return reply.review_id

    async def review(self, review_id: str) -> ReviewRecord:
        reply: ReviewRecord = await self.rpc.call(
            "satisfaction.get_review", {"review_id": review_id}, response_type=ReviewRecord
        )
        return reply

    async def decided(self, review_id: str) -> ReviewRecord:
        """The review once moderation has decided on it."""

        async def not_pending() -> bool:
            return (await self.review(review_id)).status != "PENDING"

        await eventually(not_pending)
        return await self.review(review_id)

    async def reviews(self, sku: str, **page: int) -> ReviewPage:
        reply: ReviewPage = await self.rpc.call(
            "satisfaction.get_reviews", {"sku": sku, **page}, response_type=ReviewPage
        )
        return reply

    async def summary(self) -> Summary:
        reply: Summary = await self.rpc.call("satisfaction.summary", {}, response_type=Summary)
        return reply

    async def events(self, topic: str) -> list[tuple[str, dict[str, Any]]]:
        entries = await self.redis.xrange(KEYS.events(topic))
        return [(fields["type"], msgspec.json.decode(fields["data"])) for _, fields in entries]

    async def complete_order(
        self, order_id: str, user_id: str, message_id: str | None = None
    ) -> None:
        completed = {
            "order_id": order_id,
            "user_id": user_id,
            "items": [{"sku": "SKU-1", "qty": 1}],
        }
        await Publisher(self.redis, KEYS).publish(
            events.ORDER_COMPLETED, completed, key=order_id, message_id=message_id
        )

    async def survey_of(self, order_id: str) -> str:
        """The id of the survey sent for an order, once it is sent."""

        async def sent() -> bool:
            return any(data["order_id"] == order_id for _, data in await self.events("survey"))

        await eventually(sent)
        [survey_id] = [
            d["survey_id"] for _, d in await self.events("survey") if d["order_id"] == order_id
        ]
        return str(survey_id)

    async def answer(
        self, survey_id: str, user_id: str, score: int, comment: str = ""
    ) -> SurveyRecord:
        reply: SurveyRecord = await self.rpc.call(
            "satisfaction.answer_survey",
            {"survey_id": survey_id, "user_id": user_id, "score": score, "comment": comment},
            response_type=SurveyRecord,
        )
        return reply


@pytest.fixture
async def shop(fake_redis: fakeredis.FakeAsyncRedis) -> AsyncIterator[Shop]:
    async with (
        running(satisfaction.build(FAST), fake_redis) as consumer,
        running(moderation.build(FAST), fake_redis),
        RpcClient(fake_redis, KEYS) as rpc,
    ):
        yield Shop(fake_redis, rpc, consumer)


# -- reviews --------------------------------------------------------------------
async def test_a_clean_review_is_published_and_moves_the_average(shop: Shop) -> None:
    first = await shop.submit("u1", "SKU-1", 5, KIND)
    published = await shop.decided(first)
    assert (published.status, published.reasons, published.text) == ("PUBLISHED", [], KIND)
    page = await shop.reviews("SKU-1")
    assert (page.total, page.average_rating) == (1, 5.0)

    second = await shop.submit("u2", "SKU-1", 2, "  Too small for my kitchen, returned it.  ")
    assert (await shop.decided(second)).status == "PUBLISHED"
    page = await shop.reviews("SKU-1")
    assert (page.total, page.average_rating) == (2, 3.5)
    newest = page.items[0]
    assert (newest.review_id, newest.user_id, newest.rating) == (second, "u2", 2)
    assert newest.text == "Too small for my kitchen, returned it."  # trimmed
    assert [item.review_id for item in page.items] == [second, first]
    assert (await shop.reviews("SKU-2")).average_rating is None

    kinds = [kind for kind, _ in await shop.events("review")]
    assert kinds.count("review.submitted") == 2 and kinds.count("review.published") == 2
    announced = {
        d["review_id"]: d for k, d in await shop.events("review") if k == "review.published"
    }
    expected = {"review_id": first, "sku": "SKU-1", "user_id": "u1", "rating": 5, "text": KIND}
    assert announced[first] == expected


async def test_an_abusive_review_is_rejected_with_the_reasons(shop: Shop) -> None:
    kept = await shop.submit("u1", "SKU-1", 4, KIND)
    await shop.decided(kept)
    abusive = await shop.submit("u2", "SKU-1", 1, "The seller is a m0r0n, avoid")
    rejected = await shop.decided(abusive)
    assert rejected.status == "REJECTED"
    assert "abuse: contains 'moron'" in rejected.reasons
    page = await shop.reviews("SKU-1")
    assert [item.review_id for item in page.items] == [kept]
    assert (page.total, page.average_rating) == (1, 4.0)  # the 1-star rating does not count
    [event] = [d for k, d in await shop.events("review") if k == "review.rejected"]
    assert event == {
        "review_id": abusive, "sku": "SKU-1", "user_id": "u2", "reasons": rejected.reasons,
    }  # fmt: skip

    # A rejection frees the user to write a civil review instead.
    again = await shop.submit("u2", "SKU-1", 2, "Disappointing, the lid does not close.")
    assert (await shop.decided(again)).status == "PUBLISHED"


async def test_a_spam_review_with_a_link_is_rejected(shop: Shop) -> None:
    review_id = await shop.submit("u1", "SKU-1", 5, "Same teapot cheaper at teapots dot com")
    rejected = await shop.decided(review_id)
    assert rejected.status == "REJECTED"
    assert "link: teapots dot com" in rejected.reasons


async def test_one_review_per_user_and_sku(shop: Shop) -> None:
    await shop.submit("u1", "SKU-1", 5, KIND)
    with pytest.raises(ConflictError, match="user 'u1' has reviewed 'SKU-1' already"):
        await shop.submit("u1", "SKU-1", 3, "Changed my mind")
    await shop.submit("u1", "SKU-2", 3, KIND)  # another sku is fine
    await shop.submit("u2", "SKU-1", 3, KIND)  # and so is another user


async def test_concurrent_submissions_of_one_user_make_one_review(shop: Shop) -> None:
    results = await asyncio.gather(
        *(shop.submit("u1", "SKU-1", 4, f"{KIND} {i}") for i in range(3)), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "ConflictError", "str"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rating": 0}, "rating must be 1 to 5, got 0"),
        ({"rating": 6}, "rating must be 1 to 5, got 6"),
        ({"text": "   "}, "text must be 1 to 2000 characters long, got 0"),
        ({"text": "x" * 2001}, "text must be 1 to 2000 characters long, got 2001"),
        ({"sku": ""}, "user_id and sku must not be empty"),
        ({"verified": True}, "unknown field"),
        ({"rating": "5"}, "Expected `int`"),
    ],
)
async def test_invalid_reviews_are_refused_with_the_reason(
    shop: Shop, changes: dict[str, Any], message: str
) -> None:
    body = {"user_id": "u1", "sku": "SKU-1", "rating": 5, "text": KIND, **changes}
    with pytest.raises(InvalidError, match=message):
        await shop.rpc.call("satisfaction.submit_review", body)
    assert (await shop.summary()).reviews.pending == 0


async def test_an_unknown_review_is_not_found(shop: Shop) -> None:
    with pytest.raises(NotFoundError, match="no review 'nope'"):
        await shop.review("nope")


async def test_reviews_are_paged_newest_first(shop: Shop) -> None:
    ids = [await shop.submit(f"u{i}", "SKU-1", 1 + i % 5, KIND) for i in range(5)]
    for review_id in ids:
        await shop.decided(review_id)
    page = await shop.reviews("SKU-1", limit=2, offset=1)
    assert [item.review_id for item in page.items] == [ids[3], ids[2]]
    assert (page.total, page.average_rating) == (5, 3.0)
    assert (await shop.reviews("SKU-1", offset=5)).items == []
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}):
        with pytest.raises(InvalidError, match="limit must be 1 to 100 and offset at least 0"):
            await shop.reviews("SKU-1", **bad)


async def test_a_repeated_or_foreign_decision_changes_nothing(shop: Shop) -> None:
    review_id = await shop.submit("u1", "SKU-1", 5, KIND)
    await shop.decided(review_id)
    publisher = Publisher(shop.redis, KEYS)
    # A late contrary decision on a decided review, and decisions that are not ours.
    late = {"subject": "review", "subject_id": review_id, "allowed": False, "reasons": ["x"]}
    await publisher.publish(events.MODERATION_DECIDED, late)
    await publisher.publish(events.MODERATION_DECIDED, {**late, "subject_id": "unknown"})
    await publisher.publish(events.MODERATION_DECIDED, {**late, "subject": "product"})

    async def all_handled() -> bool:
        info = await shop.redis.xinfo_groups(KEYS.events("moderation"))
        mine = next(g for g in info if g["name"] == "satisfaction")
        return int(mine["pending"]) == 0 and int(mine["entries-read"] or 0) == 4

    await eventually(all_handled)
    assert (await shop.review(review_id)).status == "PUBLISHED"
    summary = await shop.summary()
    assert (summary.reviews.published, summary.reviews.rejected) == (1, 0)
    assert [k for k, _ in await shop.events("review")].count("review.rejected") == 0


# -- surveys --------------------------------------------------------------------
async def test_a_completed_order_sends_one_survey_however_often_it_is_delivered(
    shop: Shop,
) -> None:
    await shop.complete_order("o1", "u1", message_id="m1")
    await shop.complete_order("o1", "u1", message_id="m1")  # redelivered as is
    await shop.complete_order("o1", "u1", message_id="m2")  # or published twice
    await shop.complete_order("o2", "u2")
    survey_id = await shop.survey_of("o1")
    await shop.survey_of("o2")

    async def all_handled() -> bool:
        info = await shop.redis.xinfo_groups(KEYS.events("order"))
        return int(info[0]["pending"]) == 0 and int(info[0]["entries-read"] or 0) == 4

    await eventually(all_handled)
    sent = [data for _, data in await shop.events("survey")]
    assert [d["order_id"] for d in sent] in (["o1", "o2"], ["o2", "o1"])
    assert {"survey_id": survey_id, "order_id": "o1", "user_id": "u1"} in sent
    assert (await shop.summary()).surveys.sent == 2


async def test_answers_make_the_nps(shop: Shop) -> None:
    scores = [10, 9, 9, 8, 7, 6, 0, 10]  # 4 promoters, 2 passives, 2 detractors
    for i in range(len(scores)):
        await shop.complete_order(f"o{i}", f"u{i}")
    for i, score in enumerate(scores):
        survey_id = await shop.survey_of(f"o{i}")
        comment = f"comment {i}" if i % 2 == 0 else ""
        answered = await shop.answer(survey_id, f"u{i}", score, comment)
        assert (answered.score, answered.comment, answered.order_id) == (score, comment, f"o{i}")
        assert answered.answered_at is not None
    surveys = (await shop.summary()).surveys
    assert (surveys.sent, surveys.answered) == (8, 8)
    assert (surveys.promoters, surveys.passives, surveys.detractors) == (4, 2, 2)
    assert surveys.nps == 25.0  # 50 % promoters - 25 % detractors


async def test_the_summary_counts_reviews_and_lists_the_latest_comments(shop: Shop) -> None:
    empty = await shop.summary()
    assert empty.surveys.nps is None and empty.reviews.average_rating is None
    assert empty.recent_feedback == []

    shop.consumer.apply_settings(msgspec.structs.replace(shop.consumer.settings, recent_feedback=2))
    for i, (score, comment) in enumerate([(9, "fast"), (3, "late"), (10, ""), (8, "fine")]):
        await shop.complete_order(f"o{i}", "u1")
        await shop.answer(await shop.survey_of(f"o{i}"), "u1", score, comment)
    for user_id, rating, text in [("u1", 4, KIND), ("u2", 1, "You idiots"), ("u3", 5, KIND)]:
        await shop.decided(await shop.submit(user_id, "SKU-1", rating, text))
    await shop.decided(await shop.submit("u1", "SKU-2", 3, KIND))

    summary = await shop.summary()
    assert [(f.score, f.comment) for f in summary.recent_feedback] == [(8, "fine"), (3, "late")]
    assert summary.surveys.nps == 25.0  # 2 promoters, 1 detractor of 4
    assert summary.reviews == ReviewStats(published=3, rejected=1, pending=0, average_rating=4.0)


async def test_reviews_stay_pending_and_unseen_until_moderation_decides(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    async with (
        running(satisfaction.build(FAST), fake_redis) as consumer,
        RpcClient(fake_redis, KEYS) as rpc,
    ):
        shop = Shop(fake_redis, rpc, consumer)
        review_id = await shop.submit("u1", "SKU-1", 5, KIND)
        await asyncio.sleep(0.2)
        assert (await shop.review(review_id)).status == "PENDING"
        assert (await shop.reviews("SKU-1")).total == 0
        assert (await shop.summary()).reviews.pending == 1
    async with (
        running(moderation.build(FAST), fake_redis),
        running(satisfaction.build(FAST), fake_redis) as consumer,
        RpcClient(fake_redis, KEYS) as rpc,
    ):
        shop = Shop(fake_redis, rpc, consumer)
        assert (await shop.decided(review_id)).status == "PUBLISHED"
        reviews = (await shop.summary()).reviews
        assert (reviews.pending, reviews.published, reviews.average_rating) == (0, 1, 5.0)


async def test_survey_answer_errors(shop: Shop) -> None:
    await shop.complete_order("o1", "u1")
    survey_id = await shop.survey_of("o1")
    with pytest.raises(NotFoundError, match="no survey 'nope'"):
        await shop.answer("nope", "u1", 9)
    with pytest.raises(ForbiddenError, match=f"survey '{survey_id}' was not sent to 'u2'"):
        await shop.answer(survey_id, "u2", 9)
    for bad in (-1, 11):
        with pytest.raises(InvalidError, match=f"score must be 0 to 10, got {bad}"):
            await shop.answer(survey_id, "u1", bad)
    with pytest.raises(InvalidError, match="comment must be at most 2000"):
        await shop.answer(survey_id, "u1", 9, "x" * 2001)
    await shop.answer(survey_id, "u1", 9)
    with pytest.raises(ConflictError, match="is answered already"):
        await shop.answer(survey_id, "u1", 3)
    surveys = (await shop.summary()).surveys
    assert (surveys.answered, surveys.promoters, surveys.detractors) == (1, 1, 0)


async def test_concurrent_answers_count_once(shop: Shop) -> None:
    await shop.complete_order("o1", "u1")
    survey_id = await shop.survey_of("o1")
    results = await asyncio.gather(
        *(shop.answer(survey_id, "u1", score) for score in (10, 0)), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "SurveyRecord"]
    assert (await shop.summary()).surveys.answered == 1


@pytest.mark.parametrize(
    ("score", "group"),
    [
        (0, "detractors"),
        (6, "detractors"),
        (7, "passives"),
        (8, "passives"),
        (9, "promoters"),
        (10, "promoters"),
    ],
)
def test_score_groups(score: int, group: str) -> None:
    assert group_of(score) == group


def test_nps_bounds() -> None:
    assert net_promoter_score(0, 0, 0) is None
    assert net_promoter_score(3, 0, 3) == 100.0
    assert net_promoter_score(0, 3, 3) == -100.0
    assert net_promoter_score(1, 1, 3) == 0.0
    assert net_promoter_score(2, 1, 3) == 33.3
