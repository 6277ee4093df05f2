"""The catalog service on fakeredis, driven through a running consumer and RPC."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import msgspec
import pytest

from streamcart.bus.options import ServiceOptions
from streamcart.bus.publisher import Publisher
from streamcart.bus.rpc import RpcClient
from streamcart.errors import ConflictError, InvalidError, NotFoundError
from streamcart.workers.catalog import build
from streamcart.workers.catalog.keys import CatalogKeys
from streamcart.workers.catalog.service import ProductPage, SearchResult
from streamcart.workers.events import Product
from tests.unit.support import KEYS, eventually, running

FAST = ServiceOptions(block_ms=50, retry_initial_ms=5)
CATALOG_KEYS = CatalogKeys(functools.partial(KEYS.state, "catalog"))
LAMP = {
    "sku": "LAMP-1",
    "name": "Desk Lamp",
    "description": "A warm LED lamp for reading",
    "price": 2999,
    "currency": "CNY",
    "category": "lighting",
    "weight_g": 1200,
}
SHOP = [
    LAMP,
    {"sku": "LAMP-2", "name": "Floor Lamp", "description": "Tall lamp, warm light",
     "price": 8999, "category": "lighting"},
    {"sku": "MUG-2", "name": "coffee mug", "description": "Blue", "price": 1500,
     "category": "kitchen"},
    {"sku": "MUG-1", "name": "Coffee Mug", "description": "Warm ceramic mug", "price": 1200,
     "category": "kitchen"},
    {"sku": "KETTLE-1", "name": "Kettle", "description": "Boils water for coffee", "price": 5000,
     "category": "kitchen"},
]  # fmt: skip


@pytest.fixture
async def rpc(fake_redis: fakeredis.FakeAsyncRedis) -> AsyncIterator[RpcClient]:
    """An RPC client to a catalog service running on the fake."""
    async with running(build(FAST), fake_redis), RpcClient(fake_redis, KEYS) as client:
        yield client


async def _create(rpc: RpcClient, body: dict[str, Any]) -> Product:
    product: Product = await rpc.call("catalog.create_product", body, response_type=Product)
    return product


async def _search(rpc: RpcClient, **query: Any) -> tuple[list[str], int]:
    result = await rpc.call("catalog.search", query, response_type=SearchResult)
    return [item.sku for item in result.items], result.total


async def _events(redis: fakeredis.FakeAsyncRedis, message_type: str) -> list[dict[str, Any]]:
    entries = await redis.xrange(KEYS.stream_for(message_type))
    return [msgspec.json.decode(f["data"]) for _, f in entries if f["type"] == message_type]


async def test_create_then_get_answers_the_product_and_announces_it(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    created = await _create(rpc, {**LAMP, "name": "  Desk Lamp "})
    assert msgspec.structs.asdict(created) == LAMP  # trimmed
    page = await rpc.call("catalog.get_product", {"sku": "LAMP-1"}, response_type=ProductPage)
    assert page.name == "Desk Lamp" and page.price == 2999 and page.weight_g == 1200
    raw = await rpc.call("catalog.get_product", {"sku": "LAMP-1"})
    assert raw == {**LAMP, "rating": {"average": None, "count": 0},
                   "flagged": False, "flag_reasons": []}  # fmt: skip
    assert await _events(fake_redis, "product.created") == [LAMP]


async def test_the_defaults_of_a_minimal_product(rpc: RpcClient) -> None:
    created = await _create(rpc, {"sku": "X-1", "name": "Thing", "price": 1})
    assert (created.currency, created.category, created.description, created.weight_g) == (
        "CNY", "", "", 0,
    )  # fmt: skip


async def test_a_taken_sku_is_a_conflict(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    await _create(rpc, LAMP)
    with pytest.raises(ConflictError, match="'LAMP-1' exists already"):
        await _create(rpc, {**LAMP, "name": "Another lamp"})
    assert (await rpc.call("catalog.get_product", {"sku": "LAMP-1"}))["name"] == "Desk Lamp"
    assert len(await _events(fake_redis, "product.created")) == 1


async def test_concurrent_creates_of_one_sku_make_one_product(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    results = await asyncio.gather(
        *(_create(rpc, {**LAMP, "name": f"Lamp {i}"}) for i in range(3)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, Product)]
    assert len(created) == 1, results
    assert sum(isinstance(r, ConflictError) for r in results) == 2, results
    assert await _search(rpc) == (["LAMP-1"], 1)
    assert await _search(rpc, q=created[0].name) == (["LAMP-1"], 1)
    assert len(await _events(fake_redis, "product.created")) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sku": ""}, "sku must be 1 to 64"),
        ({"sku": "has space"}, "sku must be 1 to 64"),
        ({"name": "   "}, "name must be 1 to 200"),
        ({"name": "n" * 201}, "name must be 1 to 200"),
        ({"description": "d" * 5001}, "description must be at most 5000"),
        ({"price": 0}, "price must be a positive integer"),
        ({"price": -5}, "price must be a positive integer"),
        ({"price": 9.99}, r"Expected `int`, got `float` - at `\$.price`"),
        ({"currency": "cny"}, "currency must be a 3-letter upper-case code"),
        ({"currency": "EURO"}, "currency must be a 3-letter upper-case code"),
        ({"category": "c" * 65}, "category must be at most 64"),
        ({"weight_g": -1}, "weight_g must be 0 or more"),
        ({"colour": "red"}, "unknown field `colour`"),
    ],
)
async def test_invalid_fields_are_refused_naming_the_field(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidError, match=message):
        await _create(rpc, {**LAMP, **changes})
    assert await fake_redis.exists(CATALOG_KEYS.product(LAMP["sku"])) == 0


async def test_update_changes_the_given_fields_and_announces_the_product(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    await _create(rpc, LAMP)
    updated = await rpc.call(
        "catalog.update_product", {"sku": "LAMP-1", "price": 2499, "name": "Desk Light"},
        response_type=Product,
    )  # fmt: skip
    expected = {**LAMP, "price": 2499, "name": "Desk Light"}
    assert msgspec.structs.asdict(updated) == expected
    page = await rpc.call("catalog.get_product", {"sku": "LAMP-1"})
    assert {k: page[k] for k in LAMP} == expected
    assert await _events(fake_redis, "product.updated") == [expected]


async def test_updating_an_unknown_or_with_nothing_or_badly_is_refused(rpc: RpcClient) -> None:
    with pytest.raises(NotFoundError, match="no product with sku 'NOPE'"):
        await rpc.call("catalog.update_product", {"sku": "NOPE", "price": 1})
    await _create(rpc, LAMP)
    with pytest.raises(InvalidError, match="give at least one field to change"):
        await rpc.call("catalog.update_product", {"sku": "LAMP-1"})
    with pytest.raises(InvalidError, match="price must be a positive integer"):
        await rpc.call("catalog.update_product", {"sku": "LAMP-1", "price": 0})
    with pytest.raises(InvalidError, match="unknown field `currency`"):
        await rpc.call("catalog.update_product", {"sku": "LAMP-1", "currency": "USD"})
    assert (await rpc.call("catalog.get_product", {"sku": "LAMP-1"}))["price"] == 2999


async def test_an_unknown_product_is_not_found(rpc: RpcClient) -> None:
    with pytest.raises(NotFoundError, match="no product with sku 'NOPE'"):
        await rpc.call("catalog.get_product", {"sku": "NOPE"})


async def test_every_get_is_a_page_view(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    await _create(rpc, LAMP)
    await rpc.call("catalog.get_product", {"sku": "LAMP-1"})
    await rpc.call("catalog.get_product", {"sku": "LAMP-1", "user_id": "u1"})
    with pytest.raises(NotFoundError):
        await rpc.call("catalog.get_product", {"sku": "NOPE", "user_id": "u1"})
    assert await _events(fake_redis, "product.viewed") == [
        {"sku": "LAMP-1", "user_id": None},
        {"sku": "LAMP-1", "user_id": "u1"},
    ]


async def test_browse_is_ordered_by_name_then_sku_and_paginated(rpc: RpcClient) -> None:
    for body in SHOP:
        await _create(rpc, body)
    everything = ["MUG-1", "MUG-2", "LAMP-1", "LAMP-2", "KETTLE-1"]
    assert await _search(rpc) == (everything, 5)
    assert await _search(rpc, limit=2, offset=2) == (["LAMP-1", "LAMP-2"], 5)
    assert await _search(rpc, limit=2, offset=4) == (["KETTLE-1"], 5)
    assert await _search(rpc, offset=9) == ([], 5)
    assert await _search(rpc, category="kitchen") == (["MUG-1", "MUG-2", "KETTLE-1"], 3)
    assert await _search(rpc, category="garden") == ([], 0)
    raw = await rpc.call("catalog.search", {"category": "lighting", "limit": 1})
    assert raw == {"items": [LAMP], "total": 2, "limit": 1, "offset": 0}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "warm lamp"}, (["LAMP-1", "LAMP-2"], 2)),  # every word must match
        ({"q": "lamp warm"}, (["LAMP-1", "LAMP-2"], 2)),
        ({"q": "warm"}, (["MUG-1", "LAMP-1", "LAMP-2"], 3)),
        ({"q": "warm lam"}, (["LAMP-1", "LAMP-2"], 2)),  # the last word as a prefix
        ({"q": "c"}, (["MUG-1", "MUG-2", "KETTLE-1"], 3)),  # coffee, ceramic
        ({"q": "COFFEE  Mug!"}, (["MUG-1", "MUG-2"], 2)),
        ({"q": "coffee", "category": "kitchen", "limit": 1, "offset": 1}, (["MUG-2"], 3)),
        ({"q": "lamp", "category": "kitchen"}, ([], 0)),
        ({"q": "lamp xyz"}, ([], 0)),
        ({"q": "lam warm"}, ([], 0)),  # only the last word is a prefix
        ({"q": "?!"}, (["MUG-1", "MUG-2", "LAMP-1", "LAMP-2", "KETTLE-1"], 5)),  # no words
    ],
)
async def test_text_search(
    rpc: RpcClient, query: dict[str, Any], expected: tuple[list[str], int]
) -> None:
    for body in SHOP:
        await _create(rpc, body)
    assert await _search(rpc, **query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": 0}, "limit must be 1 to 100, got 0"),
        ({"limit": 101}, "limit must be 1 to 100, got 101"),
        ({"offset": -1}, "offset must be 0 or more"),
        ({"page": 2}, "unknown field `page`"),
    ],
)
async def test_a_bad_page_is_refused(rpc: RpcClient, query: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidError, match=message):
        await rpc.call("catalog.search", query)


async def test_search_follows_updates(rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis) -> None:
    for body in SHOP:
        await _create(rpc, body)
    await rpc.call(
        "catalog.update_product",
        {"sku": "LAMP-1", "name": "Bright Light", "description": "Clamps on", "category": "office"},
    )
    assert await _search(rpc, q="lamp") == (["LAMP-2"], 1)
    assert await _search(rpc, q="reading") == ([], 0)
    assert await _search(rpc, q="clamps bri") == (["LAMP-1"], 1)
    assert await _search(rpc, category="lighting") == (["LAMP-2"], 1)
    assert await _search(rpc, category="office") == (["LAMP-1"], 1)
    assert (await _search(rpc))[0] == ["LAMP-1", "MUG-1", "MUG-2", "LAMP-2", "KETTLE-1"]
    # A word nobody holds any more leaves the vocabulary; shared ones stay.
    vocabulary = set(await fake_redis.zrange(CATALOG_KEYS.vocabulary(), 0, -1))
    assert {"reading", "desk", "led", "a"}.isdisjoint(vocabulary)
    assert {"lamp", "warm", "bright", "clamps", "on"} <= vocabulary
    assert await fake_redis.exists(CATALOG_KEYS.token("reading")) == 0


async def test_get_many_answers_the_known_products_in_order(rpc: RpcClient) -> None:
    for body in SHOP:
        await _create(rpc, body)
    reply = await rpc.call("catalog.get_many", {"skus": ["MUG-1", "NOPE", "LAMP-1", "MUG-1"]})
    assert [item["sku"] for item in reply["items"]] == ["MUG-1", "LAMP-1"]
    assert reply["items"][1] == LAMP
    assert await rpc.call("catalog.get_many", {"skus": []}) == {"items": []}
    with pytest.raises(InvalidError, match="at most 100 skus"):
        await rpc.call("catalog.get_many", {"skus": [f"S-{i}" for i in range(101)]})


async def _settled(redis: fakeredis.FakeAsyncRedis, topic: str) -> bool:
    """The catalog has read and acknowledged every entry of the topic."""
    stream = KEYS.events(topic)
    [(last_id, _)] = await redis.xrevrange(stream, count=1)
    return any(
        group["name"] == "catalog"
        and group["pending"] == 0
        and group["last-delivered-id"] == last_id
        for group in await redis.xinfo_groups(stream)
    )


async def _rating(rpc: RpcClient, sku: str) -> dict[str, Any]:
    page: dict[str, Any] = await rpc.call("catalog.get_product", {"sku": sku})
    return page["rating"]


async def test_published_reviews_make_the_rating_each_counted_once(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    for body in SHOP:
        await _create(rpc, body)
    publisher = Publisher(fake_redis, KEYS)
    review = {"review_id": "r1", "sku": "LAMP-1", "user_id": "u1", "rating": 5, "text": "Great"}
    await publisher.publish("review.published", review, message_id="m1")
    await publisher.publish("review.published", review, message_id="m1")  # delivered again
    await publisher.publish("review.published", review, message_id="m2")  # published again
    await publisher.publish("review.published", {**review, "review_id": "r2", "rating": 2})
    await publisher.publish("review.submitted", {**review, "review_id": "r3", "rating": 1})
    await publisher.publish("review.published", {**review, "review_id": "r4", "sku": "MUG-1"})
    await eventually(lambda: _settled(fake_redis, "review"))
    assert await _rating(rpc, "LAMP-1") == {"average": 3.5, "count": 2}
    assert await _rating(rpc, "MUG-1") == {"average": 5.0, "count": 1}
    assert await _rating(rpc, "LAMP-2") == {"average": None, "count": 0}


async def test_a_rating_out_of_range_is_dead_lettered_not_counted(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    await _create(rpc, LAMP)
    review = {"review_id": "r1", "sku": "LAMP-1", "user_id": "u1", "rating": 6, "text": "!"}
    await Publisher(fake_redis, KEYS).publish("review.published", review)
    await eventually(lambda: _settled(fake_redis, "review"))
    [(_, letter)] = await fake_redis.xrange(KEYS.dlq("catalog"))
    assert letter["dlq_error"] == "InvalidError: review 'r1': rating must be 1 to 5, got 6"
    assert await _rating(rpc, "LAMP-1") == {"average": None, "count": 0}


async def test_moderation_flags_and_clears_a_product(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    for body in SHOP:
        await _create(rpc, body)
    publisher = Publisher(fake_redis, KEYS)
    verdict = {"subject": "product", "subject_id": "LAMP-1", "allowed": False,
               "reasons": ["prohibited item"]}  # fmt: skip
    await publisher.publish("moderation.decided", verdict)
    # A verdict on a review is satisfaction's business, even with a matching id.
    await publisher.publish("moderation.decided", {**verdict, "subject": "review",
                                                   "subject_id": "LAMP-2"})  # fmt: skip
    await eventually(lambda: _settled(fake_redis, "moderation"))
    page = await rpc.call("catalog.get_product", {"sku": "LAMP-1"})
    assert (page["flagged"], page["flag_reasons"]) == (True, ["prohibited item"])
    other = await rpc.call("catalog.get_product", {"sku": "LAMP-2"})
    assert (other["flagged"], other["flag_reasons"]) == (False, [])

    await publisher.publish("moderation.decided", {**verdict, "allowed": True, "reasons": []})
    await eventually(lambda: _settled(fake_redis, "moderation"))
    page = await rpc.call("catalog.get_product", {"sku": "LAMP-1"})
    assert (page["flagged"], page["flag_reasons"]) == (False, [])
