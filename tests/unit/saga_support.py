"""The order saga on fakeredis with its consumers in reach: their breakers, their settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fakeredis import FakeAsyncRedis

from streamcart.bus.consumer import Consumer
from streamcart.bus.options import ServiceOptions
from streamcart.bus.rpc import RpcClient
from streamcart.resilience.breaker import BreakerSettings, CircuitBreaker
from streamcart.workers.inventory import service as inventory
from streamcart.workers.logistics import service as logistics
from streamcart.workers.logistics.fees import LogisticsSettings
from streamcart.workers.orders import service as orders
from streamcart.workers.payments import service as payments
from tests.unit.support import KEYS
from tests.unit.test_saga import FAST, fake_catalog

# Long retry budgets, as the saga services have, with the backoff cut short for a test.
PATIENT = msgspec.structs.replace(FAST, max_attempts=200, retry_max_ms=100)


class Shop:
    """A running saga: an RPC client and each service's consumer."""

    def __init__(self, rpc: RpcClient, consumers: dict[str, Consumer]) -> None:
        self.rpc = rpc
        self.consumers = consumers

    def configure(self, service: str, settings: Any) -> None:
        """New settings for ``service`` from its next message on, as a config change does."""
        self.consumers[service].apply_settings(settings)

    def provider_breaker(self, cool_down_s: float) -> CircuitBreaker:
        """Payments' breaker of the provider, cooling down for ``cool_down_s``."""
        breakers = self.consumers["payments"].rpc.breakers
        assert breakers is not None
        breakers.update(BreakerSettings(cool_down_s=cool_down_s))
        return breakers.get(payments.PROVIDER)


@contextlib.asynccontextmanager
async def saga_shop(
    redis: FakeAsyncRedis, options: ServiceOptions = PATIENT, **settings: Any
) -> AsyncIterator[Shop]:
    """Every saga service running with ``options`` and the given settings by service name."""
    services = [fake_catalog(), *(module.build(options) for module in
                                  (orders, inventory, payments, logistics))]  # fmt: skip
    consumers = {s.name: Consumer(s, redis, name="c1", keys=KEYS, concurrency=16)
                 for s in services}  # fmt: skip
    consumers["logistics"].apply_settings(
        LogisticsSettings(dispatch_after_ms=30, deliver_after_ms=30)
    )
    for name, value in settings.items():
        consumers[name].apply_settings(value)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run(stop)) for consumer in consumers.values()]
    rpc = RpcClient(redis, KEYS)
    try:
        yield Shop(rpc, consumers)
    finally:
        await rpc.aclose()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        for consumer in consumers.values():
            await consumer.rpc.aclose()
