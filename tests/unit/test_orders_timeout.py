"""The saga's timeout: an order stuck in an outage is given up, compensated, and stays so.

Orders not confirmed within ``saga_timeout_s`` are cancelled with the reason;
the stock comes back, a charge that lands afterwards is refunded, and a saga
message dead-lettered during the outage converges when it is replayed.
"""

from __future__ import annotations

from fakeredis import FakeAsyncRedis

from streamcart.bus import deadletter
from streamcart.workers.logistics.fees import LogisticsSettings
from streamcart.workers.orders.service import OrdersSettings
from streamcart.workers.payments.provider import SandboxProvider, SandboxSettings
from streamcart.workers.payments.service import PaymentsSettings
from tests.unit.saga_support import saga_shop
from tests.unit.support import KEYS, eventually
from tests.unit.test_saga import FAST, add_stock, all_invariants_hold, level, order_in, place

TEA = [{"sku": "tea", "qty": 2}]
FAILING = PaymentsSettings(sandbox=SandboxSettings(failure_rate=1.0), retry_pause_ms=5)


async def kinds(redis: FakeAsyncRedis) -> list[str]:
    return [entry["kind"] for entry in await SandboxProvider(redis, KEYS).ledger()]


async def test_an_order_the_provider_cannot_charge_in_time_is_cancelled_and_compensated(
    fake_redis: FakeAsyncRedis,
) -> None:
    hurried = OrdersSettings(saga_timeout_s=0.3)
    async with saga_shop(fake_redis, orders=hurried, payments=FAILING) as shop:
        shop.provider_breaker(cool_down_s=0.1)
        await add_stock(shop.rpc, "tea", 2)
        order_id = await place(shop.rpc, TEA)
        order = await order_in(shop.rpc, order_id, "CANCELLED", "PAYMENT_FAILED")

        async def released() -> bool:
            return (await level(fake_redis, "tea")).available == 2

        await eventually(released)
        shop.configure("payments", PaymentsSettings())  # the provider is back
        await all_invariants_hold(fake_redis)  # the waiting charge gave up for good
    assert order["status"] == "CANCELLED", order["reason"]
    assert "saga_timeout_s" in order["reason"] and "payment" in order["reason"]
    assert await kinds(fake_redis) == []


async def test_a_charge_landing_after_the_timeout_is_refunded(fake_redis: FakeAsyncRedis) -> None:
    hurried = OrdersSettings(saga_timeout_s=0.5)
    slow = PaymentsSettings(sandbox=SandboxSettings(latency_ms=1_000))
    async with saga_shop(fake_redis, orders=hurried, payments=slow) as shop:
        await add_stock(shop.rpc, "tea", 2)
        order_id = await place(shop.rpc, TEA)
        order = await order_in(shop.rpc, order_id, "CANCELLED", "CONFIRMED", "DELIVERED")

        async def refunded() -> bool:
            return await kinds(fake_redis) == ["capture", "refund"]

        await eventually(refunded)
        await all_invariants_hold(fake_redis)
        final = await shop.rpc.call("orders.get", {"order_id": order_id})
    assert order["status"] == "CANCELLED"
    assert final["payment"]["status"] == "REFUNDED" and final["status"] == "CANCELLED"


async def test_saga_messages_dead_lettered_in_an_outage_converge_when_replayed(
    fake_redis: FakeAsyncRedis,
) -> None:
    down = PaymentsSettings(sandbox=SandboxSettings(down=True), retry_pause_ms=5)
    hurried = OrdersSettings(saga_timeout_s=0.3)
    # The runtime's short default budget: the outage outlasts it.
    slow = LogisticsSettings(dispatch_after_ms=1_000)
    async with saga_shop(fake_redis, FAST, orders=hurried, logistics=slow) as shop:
        shop.provider_breaker(cool_down_s=0.05)
        await add_stock(shop.rpc, "tea", 4)
        paid = await place(shop.rpc, TEA)
        await order_in(shop.rpc, paid, "CONFIRMED")
        shop.configure("payments", down)
        stuck = await place(shop.rpc, TEA)  # its charge is dead-lettered
        refund = await shop.rpc.call("orders.cancel", {"order_id": paid})  # and this refund

        async def dead_lettered() -> bool:
            return await deadletter.count_dead(fake_redis, KEYS, "payments") == 2

        await eventually(dead_lettered)
        order = await order_in(shop.rpc, stuck, "CANCELLED")
        shop.configure("payments", PaymentsSettings())
        assert await deadletter.replay(fake_redis, KEYS, "payments") == 2
        await all_invariants_hold(fake_redis)
    assert refund["status"] == "CANCELLED" and "saga_timeout_s" in order["reason"]
    assert await kinds(fake_redis) == ["capture", "refund"]
