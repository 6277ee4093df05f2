"""The saga services' own rules, apart from the saga: the sandbox provider's
knobs and idempotency, shipping fees, pickup points, the low-stock event."""

from __future__ import annotations

import pytest
from fakeredis import FakeAsyncRedis

from streamcart.workers.logistics.fees import LogisticsSettings, pickup_point, quote
from streamcart.workers.payments.provider import (
    CAPTURED,
    DECLINED,
    ProviderDownError,
    ProviderError,
    ProviderTimeoutError,
    SandboxProvider,
    SandboxSettings,
)
from tests.unit.support import KEYS

CHARGE = {"amount": 1_000, "currency": "CNY", "method": "card", "token": "tok_ok"}


async def test_a_charge_is_made_once_per_idempotency_key(fake_redis: FakeAsyncRedis) -> None:
    provider = SandboxProvider(fake_redis, KEYS)
    first = await provider.charge("order-1", **CHARGE)
    again = await provider.charge("order-1", **{**CHARGE, "amount": 5})
    assert first.status == CAPTURED and again == first
    refund = await provider.refund("refund:order-1", first)
    assert await provider.refund("refund:order-1", first) == refund
    kinds = [(entry["kind"], entry["amount"]) for entry in await provider.ledger()]
    assert kinds == [("capture", "1000"), ("refund", "1000")]


@pytest.mark.parametrize(
    ("knobs", "outcome"),
    [
        ({"decline_rate": 1.0}, DECLINED),
        ({"failure_rate": 1.0}, ProviderError),
        ({"timeout_rate": 1.0, "timeout_ms": 1}, ProviderTimeoutError),
        ({}, CAPTURED),
    ],
)
async def test_the_sandbox_misbehaves_as_configured(
    fake_redis: FakeAsyncRedis, knobs: dict[str, float], outcome: object
) -> None:
    provider = SandboxProvider(fake_redis, KEYS, SandboxSettings(**knobs))
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            await provider.charge("order-1", **CHARGE)
        assert await provider.find("order-1") is None  # nothing was charged
        return
    assert (await provider.charge("order-1", **CHARGE)).status == outcome
    assert len(await provider.ledger()) == (1 if outcome == CAPTURED else 0)


async def test_the_sandbox_can_charge_and_lose_its_answer(fake_redis: FakeAsyncRedis) -> None:
    lost = SandboxProvider(fake_redis, KEYS, SandboxSettings(timeout_after_charge_rate=1.0,
                                                             timeout_ms=1))  # fmt: skip
    for _ in range(2):  # asked again under the same key, it times out again
        with pytest.raises(ProviderTimeoutError):
            await lost.charge("order-1", **CHARGE)
    found = await lost.find("order-1")
    assert found is not None and found.status == CAPTURED
    assert [entry["kind"] for entry in await lost.ledger()] == ["capture"]


async def test_a_sandbox_that_is_down_refuses_charges_look_ups_and_refunds(
    fake_redis: FakeAsyncRedis,
) -> None:
    charge = await SandboxProvider(fake_redis, KEYS).charge("order-1", **CHARGE)
    down = SandboxProvider(fake_redis, KEYS, SandboxSettings(down=True))
    with pytest.raises(ProviderDownError):
        await down.charge("order-2", **CHARGE)
    with pytest.raises(ProviderDownError):
        await down.find("order-1")
    with pytest.raises(ProviderDownError):
        await down.refund("refund:order-1", charge)
    assert [entry["kind"] for entry in await down.ledger()] == ["capture"]


@pytest.mark.parametrize(
    ("grams", "zone", "fee"),
    [(300, "local", 600), (1_000, "local", 600), (1_001, "local", 800), (2_500, "national", 1_900),
     (100, "mars", 2_000)],
)  # fmt: skip
def test_the_fee_is_the_zone_base_plus_each_started_kilogram_after_the_first(
    grams: int, zone: str, fee: int
) -> None:
    assert quote(LogisticsSettings(), grams, zone).fee == fee


def test_a_pickup_point_is_one_of_the_citys() -> None:
    settings = LogisticsSettings()
    points = {pickup_point(settings, "Shanghai", f"order-{i}") for i in range(20)}
    assert points == set(settings.pickup_points["shanghai"])
    assert pickup_point(settings, "Lhasa", "order-1") is None
