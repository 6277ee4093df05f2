"""The cart service on fakeredis, with the real catalog and a fake orders service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import msgspec
import pytest

from streamcart.bus import dispatch
from streamcart.bus.commit import Relay
from streamcart.bus.consumer import Consumer
from streamcart.bus.context import Context
from streamcart.bus.dedup import DedupWindow
from streamcart.bus.options import ServiceOptions
from streamcart.bus.rpc import RpcClient
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, DomainError, InvalidError, NotFoundError
from streamcart.workers import cart, catalog, events
from streamcart.workers.cart.pricing import CartView
from tests.unit.support import KEYS, running

FAST = ServiceOptions(block_ms=50, retry_initial_ms=5)
MUG = {"sku": "MUG-1", "name": "Coffee Mug", "price": 1200}
LAMP = {"sku": "LAMP-1", "name": "Desk Lamp", "price": 2999}
BOOK = {"sku": "BOOK-1", "name": "A Book", "price": 1999, "currency": "USD"}
ADDRESS = {"name": "Li Lei", "line1": "1 Road", "city": "Shanghai", "zone": "Pudong",
           "postcode": "200120"}  # fmt: skip
CHECKOUT = {"user_id": "u1", "payment_method": "alipay", "address": ADDRESS}


class FakeOrders:
    """An ``orders`` service that accepts every order (or refuses with ``refusal``)
    and keeps what it was asked."""

    def __init__(self) -> None:
        self.placed: list[events.PlaceOrder] = []
        self.refusal: DomainError | None = None
        # Run while an order is being placed: what a shopper does meanwhile.
        self.meanwhile: Callable[[], Awaitable[None]] | None = None

    def build(self) -> Service:
        service = Service("orders", options=FAST)

        @service.on(events.ORDERS_PLACE)
        async def place(msg: events.PlaceOrder, ctx: Context) -> events.OrderAccepted:
            if self.refusal is not None:
                raise self.refusal
            if self.meanwhile is not None:
                await self.meanwhile()
            self.placed.append(msg)
            return events.OrderAccepted(order_id=f"o-{len(self.placed)}", status=events.PENDING)

        return service


class Shop(msgspec.Struct):
    rpc: RpcClient
    carts: Consumer
    orders: FakeOrders


@pytest.fixture
async def shop(fake_redis: fakeredis.FakeAsyncRedis) -> AsyncIterator[Shop]:
    """The cart, catalog (with a mug, a lamp and a book in USD) and fake orders running."""
    orders = FakeOrders()
    async with (
        running(catalog.build(FAST), fake_redis),
        running(orders.build(), fake_redis),
        running(cart.build(FAST), fake_redis) as carts,
        RpcClient(fake_redis, KEYS) as rpc,
    ):
        for product in (MUG, LAMP, BOOK):
            await rpc.call("catalog.create_product", product)
        yield Shop(rpc, carts, orders)


async def _add(shop: Shop, sku: str, qty: int = 1, user_id: str = "u1") -> int:
    line = await shop.rpc.call("cart.add_item", {"user_id": user_id, "sku": sku, "qty": qty})
    return int(line["qty"])


async def _cart(shop: Shop, user_id: str = "u1") -> dict[str, Any]:
    view: dict[str, Any] = await shop.rpc.call("cart.get", {"user_id": user_id})
    return view


async def _lines(shop: Shop, user_id: str = "u1") -> dict[str, int]:
    return {item["sku"]: item["qty"] for item in (await _cart(shop, user_id))["items"]}


async def test_adding_merges_and_the_cart_is_priced_at_read_time(shop: Shop) -> None:
    assert await _add(shop, "MUG-1", 2) == 2
    assert await _add(shop, "MUG-1", 3) == 5
    assert await _add(shop, "LAMP-1") == 1
    assert await _cart(shop) == {
        "user_id": "u1",
        "items": [
            {"sku": "LAMP-1", "qty": 1, "unit_price": 2999, "name": "Desk Lamp"},
            {"sku": "MUG-1", "qty": 5, "unit_price": 1200, "name": "Coffee Mug"},
        ],
        "total": 2999 + 5 * 1200,
        "currency": "CNY",
    }
    await shop.rpc.call("catalog.update_product", {"sku": "MUG-1", "price": 1000})
    view = await shop.rpc.call("cart.get", {"user_id": "u1"}, response_type=CartView)
    assert (view.total, view.items[1].unit_price) == (2999 + 5 * 1000, 1000)
    assert await _lines(shop, "u2") == {}  # carts are per user


async def test_an_empty_cart(shop: Shop) -> None:
    assert await _cart(shop, "nobody") == {
        "user_id": "nobody", "items": [], "total": 0, "currency": "CNY",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"sku": "NOPE"}, NotFoundError, "no product with sku 'NOPE'"),
        ({"sku": "MUG-1", "qty": 0}, InvalidError, "qty must be 1 or more, got 0"),
        ({"sku": "MUG-1", "user_id": " "}, InvalidError, "user_id must not be empty"),
        ({"sku": "MUG-1", "price": 1}, InvalidError, "unknown field `price`"),
    ],
)
async def test_a_bad_addition_is_refused(
    shop: Shop, body: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await shop.rpc.call("cart.add_item", {"user_id": "u1", **body})
    assert await _lines(shop) == {}


async def test_a_product_holds_at_most_max_qty(shop: Shop) -> None:
    assert await _add(shop, "MUG-1", 99) == 99
    with pytest.raises(InvalidError, match="qty of 'MUG-1' would be 100; a cart holds at most 99"):
        await _add(shop, "MUG-1")
    with pytest.raises(InvalidError, match="at most 99"):
        await shop.rpc.call("cart.set_quantity", {"user_id": "u1", "sku": "LAMP-1", "qty": 100})
    assert await _lines(shop) == {"MUG-1": 99}


async def test_a_cart_holds_at_most_max_lines_products(shop: Shop) -> None:
    shop.carts.apply_settings(msgspec.structs.replace(shop.carts.settings, max_lines=1))
    await _add(shop, "MUG-1")
    with pytest.raises(InvalidError, match="the cart is full: it holds at most 1 products"):
        await _add(shop, "LAMP-1")
    assert await _add(shop, "MUG-1") == 2  # more of a product it holds is fine
    assert await _lines(shop) == {"MUG-1": 2}


async def test_a_cart_is_in_one_currency(shop: Shop) -> None:
    await _add(shop, "MUG-1")
    with pytest.raises(InvalidError, match="'BOOK-1' is priced in USD but the cart is in CNY"):
        await _add(shop, "BOOK-1")
    assert await _add(shop, "BOOK-1", user_id="u2") == 1
    assert (await _cart(shop, "u2"))["currency"] == "USD"


async def test_set_quantity_and_remove(shop: Shop) -> None:
    await _add(shop, "MUG-1", 2)
    await _add(shop, "LAMP-1")
    line = await shop.rpc.call("cart.set_quantity", {"user_id": "u1", "sku": "MUG-1", "qty": 7})
    assert line == {"sku": "MUG-1", "qty": 7}
    assert await _lines(shop) == {"LAMP-1": 1, "MUG-1": 7}
    await shop.rpc.call("cart.set_quantity", {"user_id": "u1", "sku": "MUG-1", "qty": 0})
    assert await _lines(shop) == {"LAMP-1": 1}
    with pytest.raises(NotFoundError, match="no product with sku 'NOPE'"):
        await shop.rpc.call("cart.set_quantity", {"user_id": "u1", "sku": "NOPE", "qty": 1})
    with pytest.raises(InvalidError, match="qty must be 0 or more"):
        await shop.rpc.call("cart.set_quantity", {"user_id": "u1", "sku": "LAMP-1", "qty": -1})
    line = await shop.rpc.call("cart.remove_item", {"user_id": "u1", "sku": "LAMP-1"})
    assert line == {"sku": "LAMP-1", "qty": 0}
    await shop.rpc.call("cart.remove_item", {"user_id": "u1", "sku": "LAMP-1"})  # again: no error
    assert await _lines(shop) == {}


async def test_clear_empties_only_that_cart(shop: Shop) -> None:
    await _add(shop, "MUG-1")
    await _add(shop, "LAMP-1", user_id="u2")
    assert await shop.rpc.call("cart.clear", {"user_id": "u1"}) is None
    assert await _lines(shop) == {}
    assert await _lines(shop, "u2") == {"LAMP-1": 1}


async def test_checkout_places_the_order_and_empties_the_cart(
    shop: Shop, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    await _add(shop, "MUG-1", 2)
    await _add(shop, "LAMP-1")
    accepted = await shop.rpc.call(
        "cart.checkout", {**CHECKOUT, "payment_token": "tok_ok"},
        response_type=events.OrderAccepted,
    )  # fmt: skip
    assert (accepted.order_id, accepted.status) == ("o-1", "PENDING")
    [order] = shop.orders.placed
    assert msgspec.to_builtins(order) == {
        "user_id": "u1",
        "items": [{"sku": "LAMP-1", "qty": 1}, {"sku": "MUG-1", "qty": 2}],
        "payment_method": "alipay",
        "payment_token": "tok_ok",
        "address": ADDRESS,
        "idempotency_key": order.idempotency_key,
    }
    assert order.idempotency_key.startswith("cart-checkout:")
    assert await _lines(shop) == {}
    [(_, entry)] = await fake_redis.xrange(KEYS.events("cart"))
    assert entry["type"] == "cart.checked_out"
    assert msgspec.json.decode(entry["data"]) == {
        "user_id": "u1",
        "order_id": "o-1",
        "items": [{"sku": "LAMP-1", "qty": 1, "unit_price": 0},
                  {"sku": "MUG-1", "qty": 2, "unit_price": 0}],
    }  # fmt: skip


async def test_a_checkout_retried_with_its_key_returns_the_first_order(shop: Shop) -> None:
    await _add(shop, "MUG-1")
    body = {**CHECKOUT, "idempotency_key": "k1"}
    first = await shop.rpc.call("cart.checkout", body)
    assert await shop.rpc.call("cart.checkout", body) == first == {
        "order_id": "o-1", "status": "PENDING",
    }  # fmt: skip
    assert [order.idempotency_key for order in shop.orders.placed] == ["k1"]
    with pytest.raises(InvalidError, match="the cart is empty"):
        await shop.rpc.call("cart.checkout", {**body, "idempotency_key": "k2"})


async def test_an_empty_cart_cannot_be_checked_out(
    shop: Shop, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    with pytest.raises(InvalidError, match="the cart is empty"):
        await shop.rpc.call("cart.checkout", CHECKOUT)
    assert shop.orders.placed == []
    assert await fake_redis.exists(KEYS.events("cart")) == 0


async def test_a_refused_order_leaves_the_cart_as_it_was(
    shop: Shop, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    await _add(shop, "MUG-1", 2)
    shop.orders.refusal = InvalidError("payment_method must be one of alipay, wechat, card")
    with pytest.raises(InvalidError, match="payment_method must be one of"):
        await shop.rpc.call("cart.checkout", {**CHECKOUT, "payment_method": "cash"})
    assert await _lines(shop) == {"MUG-1": 2}
    assert await fake_redis.exists(KEYS.events("cart")) == 0

    shop.orders.refusal = None
    accepted = await shop.rpc.call("cart.checkout", CHECKOUT)
    assert accepted["order_id"] == "o-1"
    assert await _lines(shop) == {}


async def test_a_checkout_with_a_bad_address_is_refused(shop: Shop) -> None:
    await _add(shop, "MUG-1")
    address = {k: v for k, v in ADDRESS.items() if k != "city"}
    with pytest.raises(InvalidError, match=r"missing required field `city` - at `\$.address`"):
        await shop.rpc.call("cart.checkout", {**CHECKOUT, "address": address})
    assert await _lines(shop) == {"MUG-1": 1}


async def test_concurrent_additions_are_not_lost(shop: Shop) -> None:
    results = await asyncio.gather(*(_add(shop, "MUG-1") for _ in range(2)))
    assert sorted(results) == [1, 2]
    assert await _lines(shop) == {"MUG-1": 2}


async def test_the_same_key_for_another_checkout_is_a_conflict(shop: Shop) -> None:
    await _add(shop, "MUG-1")
    body = {**CHECKOUT, "idempotency_key": "k1"}
    assert (await shop.rpc.call("cart.checkout", body))["order_id"] == "o-1"
    await _add(shop, "LAMP-1")
    with pytest.raises(ConflictError, match="Idempotency-Key was used for another checkout"):
        await shop.rpc.call("cart.checkout", body)
    assert await _lines(shop) == {"LAMP-1": 1}  # not ordered, so still in the cart
    await shop.rpc.call("cart.remove_item", {"user_id": "u1", "sku": "LAMP-1"})
    other_address = {**body, "address": {**ADDRESS, "line1": "2 Road"}}
    with pytest.raises(ConflictError, match="Idempotency-Key was used for another checkout"):
        await shop.rpc.call("cart.checkout", other_address)
    assert len(shop.orders.placed) == 1
    assert (await shop.rpc.call("cart.checkout", body))["order_id"] == "o-1"  # a true retry


async def test_what_is_added_during_a_checkout_stays_in_the_cart(shop: Shop) -> None:
    """Between the checkout's read of the cart and its commit, the shopper adds
    a lamp and one more mug: only the two mugs ordered leave the cart."""
    await _add(shop, "MUG-1", 2)

    async def shopping() -> None:
        await _add(shop, "LAMP-1")
        await _add(shop, "MUG-1")

    shop.orders.meanwhile = shopping
    accepted = await shop.rpc.call("cart.checkout", CHECKOUT)
    assert accepted["order_id"] == "o-1"
    [order] = shop.orders.placed
    assert [(item.sku, item.qty) for item in order.items] == [("MUG-1", 2)]
    assert await _lines(shop) == {"LAMP-1": 1, "MUG-1": 1}


async def test_a_cart_changed_just_before_the_commit_keeps_the_change_and_the_order(
    shop: Shop, fake_redis: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lamp lands in the cart after the checkout's last read, right before its
    commit: the commit conflicts and the checkout runs again, with the order it
    placed (the cart holds other lines now), and the lamp stays."""
    await _add(shop, "MUG-1", 2)
    real_commit = dispatch.commit
    cart_key = KEYS.state("cart", "cart", "u1")
    added: list[str] = []

    async def lamp_first(ctx: Context, dedup: DedupWindow, *, window_s: int) -> Relay | None:
        if ctx.message.type == "cart.checkout" and not added:
            added.append(ctx.message.id)
            await fake_redis.hset(cart_key, "LAMP-1", 1)
        return await real_commit(ctx, dedup, window_s=window_s)

    monkeypatch.setattr(dispatch, "commit", lamp_first)
    accepted = await shop.rpc.call("cart.checkout", {**CHECKOUT, "idempotency_key": "k1"})
    assert accepted["order_id"] == "o-1" and added
    assert [[(i.sku, i.qty) for i in order.items] for order in shop.orders.placed] == [
        [("MUG-1", 2)]
    ]
    assert await _lines(shop) == {"LAMP-1": 1}
    [(_, entry)] = await fake_redis.xrange(KEYS.events("cart"))
    assert [line["sku"] for line in msgspec.json.decode(entry["data"])["items"]] == ["MUG-1"]
