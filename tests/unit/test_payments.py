"""Payments under a failing provider: what is only waiting, what fails, what is looked up.

Only the provider's own answer fails a payment; an open breaker or a rate
limit makes the charge wait, and a timed-out charge is looked up by its
idempotency key before anything is decided.
"""

from __future__ import annotations

import asyncio

from fakeredis import FakeAsyncRedis

from streamcart.resilience.breaker import OPEN
from streamcart.resilience.ratelimit import RateLimit
from streamcart.workers.payments.provider import SandboxProvider, SandboxSettings
from streamcart.workers.payments.service import PaymentsSettings
from tests.unit.saga_support import saga_shop
from tests.unit.support import KEYS, eventually
from tests.unit.test_saga import add_stock, all_invariants_hold, order_in, place

TEA = [{"sku": "tea", "qty": 1}]


async def kinds(redis: FakeAsyncRedis) -> list[str]:
    return [entry["kind"] for entry in await SandboxProvider(redis, KEYS).ledger()]


async def test_timeouts_that_open_the_breaker_do_not_fail_the_next_good_order(
    fake_redis: FakeAsyncRedis,
) -> None:
    quick = PaymentsSettings(sandbox=SandboxSettings(timeout_ms=20), retry_pause_ms=5)
    async with saga_shop(fake_redis, payments=quick) as shop:
        breaker = shop.provider_breaker(cool_down_s=0.5)
        await add_stock(shop.rpc, "tea", 10)
        stuck = [await place(shop.rpc, TEA, payment_token="tok_timeout") for _ in range(4)]

        async def opened() -> bool:
            return breaker.state == OPEN

        await eventually(opened)
        good = await place(shop.rpc, TEA, payment_token="tok_ok")
        order = await order_in(shop.rpc, good, "DELIVERED", "PAYMENT_FAILED")
        timed_out = [await order_in(shop.rpc, order_id, "PAYMENT_FAILED") for order_id in stuck]
        await all_invariants_hold(fake_redis)
    assert order["status"] == "DELIVERED", order["reason"]
    assert all("did not answer" in failed["reason"] for failed in timed_out)
    assert await kinds(fake_redis) == ["capture"]


async def test_a_charge_out_of_rate_limit_tokens_waits_for_them(fake_redis: FakeAsyncRedis) -> None:
    scarce = PaymentsSettings(provider_rate=RateLimit(50, 1), provider_wait_s=0.01)
    async with saga_shop(fake_redis, payments=scarce) as shop:
        await add_stock(shop.rpc, "tea", 5)
        ids = await asyncio.gather(*(place(shop.rpc, TEA) for _ in range(5)))
        finals = [(await order_in(shop.rpc, i, "DELIVERED", "PAYMENT_FAILED")) for i in ids]
        await all_invariants_hold(fake_redis)
    assert [order["status"] for order in finals] == ["DELIVERED"] * 5, finals
    assert await kinds(fake_redis) == ["capture"] * 5


async def test_a_charge_whose_answer_was_lost_is_found_and_the_order_confirmed(
    fake_redis: FakeAsyncRedis,
) -> None:
    lost = SandboxSettings(timeout_after_charge_rate=1.0, timeout_ms=20)
    async with saga_shop(fake_redis, payments=PaymentsSettings(sandbox=lost)) as shop:
        await add_stock(shop.rpc, "tea", 1)
        order_id = await place(shop.rpc, TEA)
        order = await order_in(shop.rpc, order_id, "DELIVERED", "PAYMENT_FAILED")
        payment = await shop.rpc.call("payments.get", {"order_id": order_id})
        await all_invariants_hold(fake_redis)
    assert order["status"] == "DELIVERED", order["reason"]
    assert payment["status"] == "CAPTURED" and payment["amount"] == order["total"]
    assert await kinds(fake_redis) == ["capture"]


async def test_a_charge_whose_answer_was_lost_after_a_cancel_is_refunded(
    fake_redis: FakeAsyncRedis,
) -> None:
    lost = SandboxSettings(timeout_after_charge_rate=1.0, timeout_ms=300)
    async with saga_shop(fake_redis, payments=PaymentsSettings(sandbox=lost)) as shop:
        await add_stock(shop.rpc, "tea", 1)
        order_id = await place(shop.rpc, TEA)

        async def charged() -> bool:
            return await kinds(fake_redis) == ["capture"]

        await eventually(charged)  # the provider took the money; its answer is on its way
        cancelled = await shop.rpc.call("orders.cancel", {"order_id": order_id})

        async def refunded() -> bool:
            order = await shop.rpc.call("orders.get", {"order_id": order_id})
            return bool(order["payment"] and order["payment"]["status"] == "REFUNDED")

        await eventually(refunded)
        await all_invariants_hold(fake_redis)
    assert cancelled["status"] == "CANCELLED"
    assert await kinds(fake_redis) == ["capture", "refund"]
