"""Login attempts: per account whatever the email's spelling, per address, and
never refused because the limiter's Redis is away."""

from __future__ import annotations

import fakeredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streamcart.config.store import ConfigStore
from streamcart.gateway.errors import RateLimitedError
from streamcart.gateway.login_limit import LoginLimiter
from streamcart.gateway.settings import LiveSettings
from tests.unit.support import KEYS


async def _limiter(redis: fakeredis.FakeAsyncRedis, **settings: float) -> LoginLimiter:
    store = ConfigStore(redis, KEYS)
    for key, value in settings.items():
        await store.set("gateway", key, value)
    return LoginLimiter(redis, KEYS, LiveSettings(redis, KEYS))


async def test_an_account_is_one_budget_however_its_email_is_spelt(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    limiter = await _limiter(fake_redis, login_account_burst=2, login_account_rate=0.01)
    await limiter.admit("alice@example.com", "203.0.113.1")
    await limiter.admit(" Alice@Example.COM", "203.0.113.2")
    with pytest.raises(RateLimitedError, match="for this account") as refused:
        await limiter.admit("ALICE@example.com ", "203.0.113.3")
    assert 99_000 <= refused.value.retry_after_ms <= 100_000  # a token every 100 s
    await limiter.admit("bob@example.com", "203.0.113.3")
    # No email is stored in the limiter's keys.
    assert not [key for key in await fake_redis.keys("*") if "example" in key]


async def test_an_address_is_one_budget_across_accounts(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    limiter = await _limiter(fake_redis, login_address_burst=2, login_address_rate=0.01)
    await limiter.admit("a@example.com", "203.0.113.1")
    await limiter.admit("b@example.com", "203.0.113.1")
    with pytest.raises(RateLimitedError, match="from this address"):
        await limiter.admit("c@example.com", "203.0.113.1")
    await limiter.admit("c@example.com", "203.0.113.2")


class _Down(fakeredis.FakeAsyncRedis):
    async def evalsha(self, *args: object, **kwargs: object) -> object:
        raise RedisConnectionError("connection refused")

    async def eval(self, *args: object, **kwargs: object) -> object:
        raise RedisConnectionError("connection refused")


async def test_without_redis_the_attempt_goes_through() -> None:
    redis = _Down(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        limiter = LoginLimiter(redis, KEYS, LiveSettings(redis, KEYS))
        for _ in range(50):
            await limiter.admit("alice@example.com", "203.0.113.1")
    finally:
        await redis.aclose()
