"""Recommendations: the ranking rules on their own, then the service on fakeredis,
fed with shop events and asked as the gateway asks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest

from streamcart.bus.consumer import Consumer
from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Publisher
from streamcart.bus.rpc import RpcClient
from streamcart.errors import InvalidError
from streamcart.workers import events
from streamcart.workers.recommendations.ranking import (
    Neighbourhood,
    Ranked,
    Signal,
    Weights,
    rank,
    recall,
)
from streamcart.workers.recommendations.service import (
    ProductRecommendations,
    RecommendationSettings,
    build,
)
from tests.unit.support import KEYS, drained, running

FAST = ServiceOptions(block_ms=20, retry_initial_ms=5)
WEIGHTS = Weights(bought_with=1.0, viewed_with=0.6, category=0.3, popular=0.1, popular_viewed=0.05)
ADDRESS = {"name": "Li", "line1": "1 Road", "city": "Shanghai", "zone": "SH", "postcode": "200000"}


def _around(**fields: Any) -> Neighbourhood:
    return Neighbourhood(
        bought_with=fields.pop("bought_with", {}),
        viewed_with=fields.pop("viewed_with", {}),
        category_of=fields.pop("category_of", {}),
        popular_in=fields.pop("popular_in", {}),
        **fields,
    )


def _skus(ranked: Ranked | ProductRecommendations) -> list[str]:
    return [item.sku for item in ranked.items]


# -- ranking, without Redis ---------------------------------------------------
def test_recall_asks_both_graphs_for_every_seed_and_each_category_once() -> None:
    around = _around(
        bought_with={"A": [("B", 2.0)]},
        category_of={"A": "tea", "C": "tea"},
        popular_in={"tea": [("D", 9.0)]},
        popular=[("E", 5.0)],
    )
    signals = recall(["A", "C"], around, WEIGHTS)
    assert signals == [
        Signal("bought with A", 1.0, [("B", 2.0)]),
        Signal("viewed with A", 0.6, ()),
        Signal("bought with C", 1.0, ()),
        Signal("viewed with C", 0.6, ()),
        Signal("popular in category tea", 0.3, [("D", 9.0)]),
        Signal("popular", 0.1, [("E", 5.0)], personal=False),
        Signal("popular", 0.05, (), personal=False),
    ]


def test_co_purchases_outrank_co_views_then_the_category_then_popular() -> None:
    around = _around(
        bought_with={"A": [("B", 1.0)]},
        viewed_with={"A": [("C", 1.0)]},
        category_of={"A": "tea"},
        popular_in={"tea": [("D", 1.0)]},
        popular=[("E", 1.0)],
    )
    ranked = rank(recall(["A"], around, WEIGHTS), exclude=(), limit=10)
    assert [(item.sku, item.score, item.reasons) for item in ranked.items] == [
        ("B", 1.0, ["bought with A"]),
        ("C", 0.6, ["viewed with A"]),
        ("D", 0.3, ["popular in category tea"]),
        ("E", 0.1, ["popular"]),
    ]
    assert ranked.strategy == "personal"


def test_the_weights_decide_and_a_zero_weight_turns_a_source_off() -> None:
    around = _around(bought_with={"A": [("B", 1.0)]}, viewed_with={"A": [("C", 1.0)]})
    views_first = Weights(bought_with=0.5, viewed_with=2.0, category=0, popular=0, popular_viewed=0)
    assert _skus(rank(recall(["A"], around, views_first), exclude=(), limit=10)) == ["C", "B"]
    no_views = Weights(bought_with=1.0, viewed_with=0, category=0, popular=0, popular_viewed=0)
    assert _skus(rank(recall(["A"], around, no_views), exclude=(), limit=10)) == ["B"]


def test_each_source_is_scaled_to_its_strongest_so_volume_does_not_drown_relevance() -> None:
    around = _around(bought_with={"A": [("C", 3.0), ("B", 1.0)]}, popular=[("HIT", 10_000.0)])
    ranked = rank(recall(["A"], around, WEIGHTS), exclude=(), limit=10)
    assert [(item.sku, item.score) for item in ranked.items] == [
        ("C", 1.0),
        ("B", 0.333333),
        ("HIT", 0.1),
    ]


def test_sources_add_up_and_reasons_come_strongest_first_each_once() -> None:
    around = _around(
        bought_with={"A": [("B", 1.0)]},
        viewed_with={"C": [("B", 1.0)]},
        popular=[("B", 1.0)],
        popular_viewed=[("B", 1.0)],
    )
    [item] = rank(recall(["C", "A"], around, WEIGHTS), exclude=(), limit=10).items
    assert item.score == 1.75
    assert item.reasons == ["bought with A", "viewed with C", "popular"]


def test_bought_items_are_never_recommended_however_strong() -> None:
    around = _around(bought_with={"A": [("B", 9.0), ("C", 1.0)]}, popular=[("B", 5.0), ("D", 1.0)])
    ranked = rank(recall(["A"], around, WEIGHTS), exclude={"A", "B"}, limit=10)
    assert _skus(ranked) == ["C", "D"]


def test_without_history_popular_items_are_the_answer() -> None:
    around = _around(
        popular=[("P1", 50.0), ("P2", 20.0)], popular_viewed=[("V1", 9.0), ("P2", 9.0)]
    )
    ranked = rank(recall([], around, WEIGHTS), exclude=(), limit=10)
    assert [(item.sku, item.score, item.reasons) for item in ranked.items] == [
        ("P1", 0.1, ["popular"]),
        ("P2", 0.09, ["popular"]),
        ("V1", 0.05, ["popular"]),
    ]
    assert ranked.strategy == "popular"


def test_popular_items_fill_what_the_history_leaves_and_the_limit_cuts() -> None:
    around = _around(bought_with={"A": [("B", 1.0)]}, popular=[("Y", 1.0), ("X", 1.0), ("Z", 0.5)])
    ranked = rank(recall(["A"], around, WEIGHTS), exclude=(), limit=3)
    assert _skus(ranked) == ["B", "X", "Y"]  # equal scores: by sku
    assert ranked.strategy == "personal"
    assert rank(recall(["A"], around, WEIGHTS), exclude={"B"}, limit=3).strategy == "popular"


# -- the service on fakeredis -------------------------------------------------
class Shop:
    """A running recommendations service, the events it hears and its answers."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis, consumer: Consumer, rpc: RpcClient):
        self.redis = redis
        self.consumer = consumer
        self.rpc = rpc
        self.publisher = Publisher(redis, KEYS)
        self.orders = 0

    async def product(self, sku: str, category: str, *, message_type: str = "") -> None:
        data = {"sku": sku, "name": sku, "price": 100, "category": category}
        await self.publisher.publish(message_type or events.PRODUCT_CREATED, data)

    async def order(self, user_id: str, *skus: str, qty: int = 1, message_id: str = "") -> None:
        self.orders += 1
        data = {
            "order_id": f"o{self.orders}",
            "user_id": user_id,
            "items": [{"sku": sku, "qty": qty, "unit_price": 100} for sku in skus],
            "total": 100 * qty * len(skus),
            "currency": "CNY",
            "address": ADDRESS,
        }
        await self.publisher.publish(events.ORDER_CONFIRMED, data, message_id=message_id or None)

    async def views(self, user_id: str | None, *skus: str) -> None:
        for sku in skus:
            await self.publisher.publish(events.PRODUCT_VIEWED, {"sku": sku, "user_id": user_id})

    async def settled(self) -> None:
        """Wait until every event published so far is handled and acknowledged."""
        await drained(self.consumer)

    async def for_user(self, user_id: str, **extra: Any) -> Ranked:
        await self.settled()
        reply: Ranked = await self.rpc.call(
            "recommendations.for_user", {"user_id": user_id, **extra}, response_type=Ranked
        )
        return reply

    async def for_product(self, sku: str, **extra: Any) -> ProductRecommendations:
        await self.settled()
        reply: ProductRecommendations = await self.rpc.call(
            "recommendations.for_product",
            {"sku": sku, **extra},
            response_type=ProductRecommendations,
        )
        return reply


@pytest.fixture
async def shop(fake_redis: fakeredis.FakeAsyncRedis) -> AsyncIterator[Shop]:
    async with (
        running(build(FAST), fake_redis) as consumer,
        RpcClient(fake_redis, KEYS) as rpc,
    ):
        yield Shop(fake_redis, consumer, rpc)


async def _kitchen(shop: Shop) -> None:
    """A, B, C are kitchen things bought together in some orders; D sells alone."""
    for sku in "ABC":
        await shop.product(sku, "kitchen")
    await shop.product("D", "garden")
    await shop.order("u1", "A", "B")
    await shop.order("u2", "A", "B")
    await shop.order("u3", "A", "C")
    await shop.order("u4", "D", qty=5)


async def test_a_buyer_of_a_gets_what_others_bought_with_a_first(shop: Shop) -> None:
    await _kitchen(shop)
    await shop.order("u5", "A")
    ranked = await shop.for_user("u5")
    assert ranked.strategy == "personal"
    assert _skus(ranked) == ["B", "C", "D"]  # never A, which u5 has
    assert ranked.items[0].reasons == ["bought with A", "popular in category kitchen", "popular"]
    assert ranked.items[1].reasons[0] == "bought with A"
    assert ranked.items[2].reasons == ["popular"]


async def test_a_new_user_gets_the_best_sellers(shop: Shop) -> None:
    await _kitchen(shop)
    ranked = await shop.for_user("newcomer")
    assert ranked.strategy == "popular"
    assert _skus(ranked) == ["D", "A", "B", "C"]  # by units sold: 5, 3, 2, 1
    assert all(item.reasons == ["popular"] for item in ranked.items)
    assert _skus(await shop.for_user("newcomer", limit=2)) == ["D", "A"]


async def test_a_redelivered_order_is_counted_once(shop: Shop) -> None:
    for _ in range(2):
        await shop.order("u1", "A", qty=3, message_id="order-1-confirmed")
    await shop.order("u2", "B", qty=5)
    assert _skus(await shop.for_user("newcomer")) == ["B", "A"]  # A counted twice would be 6


async def test_views_link_what_one_user_looked_at_and_looking_again_adds_nothing(
    shop: Shop,
) -> None:
    await shop.views("v1", "X", "Y", "X", "Y", "X")  # one link X-Y, however often
    await shop.views("v2", "X", "Z")
    await shop.views("v3", "Z", "X")
    await shop.views(None, "Y", "Y", "Y")  # anonymous: counted, linked to nothing
    product = await shop.for_product("X")
    assert _skus(product) == ["Z", "Y"]
    assert [item.reasons for item in product.items] == [["viewed with X"], ["viewed with X"]]
    assert _skus(await shop.for_product("Y")) == ["X"]

    await shop.views("v4", "X")
    ranked = await shop.for_user("v4")
    assert ranked.strategy == "personal"
    assert _skus(ranked)[:2] == ["Z", "Y"]
    assert ranked.items[0].reasons[0] == "viewed with X"


async def test_a_view_links_only_to_the_users_recent_views(shop: Shop) -> None:
    shop.consumer.apply_settings(RecommendationSettings(recent_views=2))
    for sku in "ABCD":  # one by one, as a shopper browses: "recent" is the handling order
        await shop.views("v1", sku)
        await shop.settled()
    assert _skus(await shop.for_product("D")) == ["B", "C"]  # A is no longer recent
    assert _skus(await shop.for_product("A")) == ["B", "C"]  # C came while A was recent


async def test_for_product_ranks_bought_with_then_viewed_with_then_its_category(
    shop: Shop,
) -> None:
    for sku in "PQRS":
        await shop.product(sku, "tea")
    await shop.order("u1", "P", "Q")
    await shop.views("v1", "P", "R")
    await shop.order("u2", "S", qty=3)
    await shop.order("u3", "P")
    product = await shop.for_product("P")
    assert [(item.sku, item.reasons) for item in product.items] == [
        ("Q", ["bought with P", "popular in category tea"]),
        ("R", ["viewed with P"]),
        ("S", ["popular in category tea"]),
    ]  # never P itself, though it sells best in tea
    assert (await shop.for_product("NOBODY-KNOWS")).items == []


async def test_an_update_moves_a_product_to_its_new_category(shop: Shop) -> None:
    await shop.product("K", "old")
    await shop.product("H", "old")
    await shop.product("J", "new")
    await shop.order("u1", "K", qty=2)
    assert _skus(await shop.for_product("H")) == ["K"]
    await shop.product("K", "new", message_type=events.PRODUCT_UPDATED)
    await shop.settled()
    await shop.product("K", "stale")  # a late product.created: the update is newer
    assert (await shop.for_product("H")).items == []
    product = await shop.for_product("J")
    assert [(item.sku, item.reasons) for item in product.items] == [
        ("K", ["popular in category new"])
    ]


async def test_live_weights_change_the_ranking(shop: Shop) -> None:
    await shop.order("u1", "A", "B")
    await shop.views("v1", "A", "C")
    assert _skus(await shop.for_product("A")) == ["B", "C"]
    shop.consumer.apply_settings(RecommendationSettings(viewed_with=2.0))
    assert _skus(await shop.for_product("A")) == ["C", "B"]


@pytest.mark.parametrize(
    ("target", "data", "message"),
    [
        ("recommendations.for_user", {"user_id": "u1", "limit": 0}, "limit"),
        ("recommendations.for_user", {"user_id": "u1", "limit": 51}, "limit"),
        ("recommendations.for_user", {"user_id": ""}, "user_id"),
        ("recommendations.for_user", {"user_id": "u1", "role": "x"}, "unknown field"),
        ("recommendations.for_product", {"sku": "A", "limit": 100}, "limit"),
        ("recommendations.for_product", {}, "sku"),
    ],
)
async def test_malformed_requests_are_refused_with_the_reason(
    shop: Shop, target: str, data: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidError, match=message):
        await shop.rpc.call(target, data)
