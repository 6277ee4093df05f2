"""The moderation classifier on its own, and the service on fakeredis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import fakeredis
import msgspec
import pytest

from streamcart.bus.consumer import Consumer
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Publisher
from streamcart.bus.rpc import RpcClient
from streamcart.errors import InvalidError, NotFoundError
from streamcart.workers import events
from streamcart.workers.moderation.classifier import (
    CLEAN,
    Classifier,
    Policy,
    Verdict,
    default_classifier,
    load_examples,
    load_lexicon,
    train,
)
from streamcart.workers.moderation.links import find_links
from streamcart.workers.moderation.service import Decision, build
from tests.unit.support import KEYS, eventually, running

FAST = ServiceOptions(block_ms=50, retry_initial_ms=5)


def check(text: str, policy: Policy | None = None) -> Verdict:
    return default_classifier().check(text, policy)


# -- the classifier -------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Great phone case, fits perfectly and the buttons are easy to press.",
        "Terrible battery life, it barely lasts half a day. Returning it.",
        "I hate how short the cable is",
        "Free shipping, arrived in two days",
        "Works with a 3.5mm jack, version 2.0, e.g. on my old laptop.",
        "The assassin in this board game is a classic character",
        "Shiitake mushrooms, fresh and well packed.",
        "Stainless steel water bottle, 750 ml, keeps drinks cold for 24 hours.",
    ],
)
def test_clean_texts_are_allowed(text: str) -> None:
    verdict = check(text)
    assert verdict.allowed, verdict.reasons
    assert verdict.reasons == []
    assert verdict.scores.abuse < 0.8 and verdict.scores.spam < 0.8


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("You are an idiot", "idiot"),
        ("y0u 1d10t, learn to pack a box", "idiot"),  # disguised with digits
        ("What a m0r0000n", "moron"),  # and with stretched letters
        ("Go to hell with your refund policy", "go to hell"),
        ("This shit broke in a day", "shit"),
    ],
)
def test_abuse_is_refused_naming_the_word(text: str, word: str) -> None:
    verdict = check(text)
    assert not verdict.allowed
    assert f"abuse: contains {word!r}" in verdict.reasons


def test_abuse_the_word_list_lacks_is_refused_by_the_model() -> None:
    verdict = check("You are all brainless clowns and liars")
    assert not verdict.allowed
    assert not any("contains" in reason for reason in verdict.reasons)
    assert verdict.reasons == [f"abuse: model score {verdict.scores.abuse:.2f}"]
    assert verdict.scores.abuse >= 0.8


def test_spam_is_refused_by_the_word_list_and_by_the_model() -> None:
    listed = check("Click here to claim your prize")
    assert {"spam: contains 'click here'", "spam: contains 'claim your prize'"} <= set(
        listed.reasons
    )
    unlisted = check("Earn 500 dollars a day from your sofa, message me for details")
    assert not unlisted.allowed
    assert unlisted.reasons == [f"spam: model score {unlisted.scores.spam:.2f}"]


@pytest.mark.parametrize(
    ("text", "link"),
    [
        (
            "Nice chair. More at http://deals.example.org/chairs?id=1.",
            "http://deals.example.org/chairs?id=1",
        ),
        ("see https://x.io", "https://x.io"),
        ("go to www.cheap-stuff.net now", "www.cheap-stuff.net"),
        ("loved it, deals.com has it too", "deals.com"),
        ("loved it, DEALS.COM has it too", "DEALS.COM"),
        ("ask at deals dot com", "deals dot com"),
        ("ask at deals [dot] com", "deals [dot] com"),
        ("ask at deals(dot)com", "deals(dot)com"),
    ],
)
def test_links_are_found_as_written(text: str, link: str) -> None:
    assert find_links(text) == [link]
    assert f"link: {link}" in check(text).reasons


@pytest.mark.parametrize(
    "text", ["a 3.5mm jack, v2.0, e.g. this", "Great product.Top quality", "Nice.Me too"]
)
def test_things_that_only_look_like_domains_are_not_links(text: str) -> None:
    assert find_links(text) == []


def test_the_thresholds_and_the_link_rule_follow_the_policy() -> None:
    text = "The delivery guy was a jerk"
    score = check(text).scores.abuse
    assert 0.8 <= score < 0.99  # refused by default, by the model alone
    assert check(text).reasons == [f"abuse: model score {score:.2f}"]
    assert check(text, Policy(abuse_threshold=round(score + 0.01, 3))).allowed
    assert not check(text, Policy(abuse_threshold=score)).allowed
    linked = "Works as described, the manual is at https://example.com/manual"
    assert check(linked).reasons == ["link: https://example.com/manual"]
    assert check(linked, Policy(block_links=False)).allowed


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_a_threshold_outside_zero_to_one_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="abuse_threshold must be above 0 and at most 1"):
        Policy(abuse_threshold=threshold)


def test_the_model_is_accurate_on_examples_it_was_not_trained_on() -> None:
    """Every fifth shipped example is held out; the rest train a fresh model."""
    examples = load_examples()
    assert len(examples) >= 300
    held_out = examples[::5]
    training = [e for i, e in enumerate(examples) if i % 5]
    lexicon = load_lexicon()
    model = train(training, lexicon)

    def label(text: str) -> str:
        probabilities = model.probabilities(text)
        return max(probabilities, key=lambda name: probabilities[name])

    model_accuracy = sum(label(text) == truth for truth, text in held_out) / len(held_out)
    verdicts = Classifier(model, lexicon)
    verdict_accuracy = sum(
        verdicts.check(text).allowed == (truth == CLEAN) for truth, text in held_out
    ) / len(held_out)
    assert model_accuracy >= 0.85  # measured: 0.90 (72 of 80)
    assert verdict_accuracy >= 0.92  # measured: 0.95 (76 of 80) with the word list and links


def test_training_takes_well_under_a_second() -> None:
    started = time.perf_counter()
    train(load_examples(), load_lexicon())
    assert time.perf_counter() - started < 0.5


# -- the service ----------------------------------------------------------------
@pytest.fixture
async def moderation(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> AsyncIterator[tuple[Consumer, RpcClient]]:
    async with running(build(FAST), fake_redis) as consumer, RpcClient(fake_redis, KEYS) as rpc:
        yield consumer, rpc


async def decisions(redis: fakeredis.FakeAsyncRedis) -> list[events.ModerationDecided]:
    entries = await redis.xrange(KEYS.events("moderation"))
    assert {fields["type"] for _, fields in entries} <= {events.MODERATION_DECIDED}
    return [
        msgspec.json.decode(fields["data"], type=events.ModerationDecided) for _, fields in entries
    ]


async def test_check_answers_the_verdict(moderation: tuple[Consumer, RpcClient]) -> None:
    _, rpc = moderation
    reply = await rpc.call("moderation.check", {"text": "You idiot, visit www.spam.biz"})
    assert reply["allowed"] is False
    assert "abuse: contains 'idiot'" in reply["reasons"]
    assert "link: www.spam.biz" in reply["reasons"]
    assert set(reply["scores"]) == {"abuse", "spam"}
    clean = await rpc.call("moderation.check", {"text": "Lovely teapot"}, response_type=Verdict)
    assert clean.allowed and clean.reasons == []


async def test_check_refuses_bad_requests(moderation: tuple[Consumer, RpcClient]) -> None:
    _, rpc = moderation
    with pytest.raises(InvalidError, match="at most 10000 characters"):
        await rpc.call("moderation.check", {"text": "a" * 10_001})
    with pytest.raises(InvalidError, match="unknown field"):
        await rpc.call("moderation.check", {"text": "hi", "allowed": True})


async def test_the_policy_is_live_config(moderation: tuple[Consumer, RpcClient]) -> None:
    consumer, rpc = moderation
    text = {"text": "Manual at https://example.com/manual"}
    assert (await rpc.call("moderation.check", text))["allowed"] is False
    consumer.apply_settings(msgspec.structs.replace(consumer.settings, block_links=False))
    assert (await rpc.call("moderation.check", text))["allowed"] is True


async def test_a_submitted_review_gets_a_recorded_decision(
    moderation: tuple[Consumer, RpcClient], fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    _, rpc = moderation
    publisher = Publisher(fake_redis, KEYS)
    review = {"review_id": "r1", "sku": "SKU-1", "user_id": "u1", "rating": 1}
    await publisher.publish(events.REVIEW_SUBMITTED, {**review, "text": "The seller is a moron"})
    await publisher.publish(
        events.REVIEW_SUBMITTED, {**review, "review_id": "r2", "text": "Sturdy and well made"}
    )

    async def both_decided() -> bool:
        return len(await decisions(fake_redis)) == 2

    await eventually(both_decided)
    by_review = {d.subject_id: d for d in await decisions(fake_redis)}
    rejected, allowed = by_review["r1"], by_review["r2"]
    assert (rejected.subject, rejected.subject_id, rejected.allowed) == ("review", "r1", False)
    assert "abuse: contains 'moron'" in rejected.reasons
    assert (allowed.subject_id, allowed.allowed, allowed.reasons) == ("r2", True, [])

    recorded = await rpc.call(
        "moderation.get_decision", {"subject": "review", "subject_id": "r1"}, response_type=Decision
    )
    assert (recorded.allowed, recorded.reasons) == (False, rejected.reasons)
    assert recorded.scores.abuse >= 0.8 and recorded.at > 0


async def test_a_created_product_is_judged_on_its_name_and_description(
    moderation: tuple[Consumer, RpcClient], fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    _, rpc = moderation
    publisher = Publisher(fake_redis, KEYS)
    await publisher.publish(
        events.PRODUCT_CREATED,
        {"sku": "SKU-1", "name": "Teapot", "description": "Glazed clay, 600 ml", "price": 9900},
    )
    await publisher.publish(
        events.PRODUCT_CREATED,
        {"sku": "SKU-2", "name": "Watch", "description": "Cheaper at replicas dot com", "price": 1},
    )

    async def both_decided() -> bool:
        return len(await decisions(fake_redis)) == 2

    await eventually(both_decided)
    by_sku = {d.subject_id: d for d in await decisions(fake_redis)}
    assert by_sku["SKU-1"].subject == "product" and by_sku["SKU-1"].allowed
    assert not by_sku["SKU-2"].allowed
    assert "link: replicas dot com" in by_sku["SKU-2"].reasons
    recorded = await rpc.call(
        "moderation.get_decision", {"subject": "product", "subject_id": "SKU-2"}
    )
    assert recorded["allowed"] is False and recorded["subject"] == "product"


async def test_get_decision_errors(moderation: tuple[Consumer, RpcClient]) -> None:
    _, rpc = moderation
    with pytest.raises(NotFoundError, match="no decision on review 'nope'"):
        await rpc.call("moderation.get_decision", {"subject": "review", "subject_id": "nope"})
    with pytest.raises(InvalidError, match="subject must be one of"):
        await rpc.call("moderation.get_decision", {"subject": "order", "subject_id": "o1"})
