"""The token bucket on fakeredis, with the fake server's clock under the test's control."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import msgspec
import pytest
from fakeredis import FakeAsyncRedis
from fakeredis.commands_mixins import server_mixin
from redis.crc import key_slot

from streamcart.errors import TransientError
from streamcart.resilience import Decision, RateLimit, RateLimitedError, TokenBucket
from tests.unit.support import KEYS


class ServerClock:
    """Stands in for the ``time`` module behind the fake server's ``TIME`` command."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ServerClock:
    fake = ServerClock(1_700_000_000.0)
    monkeypatch.setattr(server_mixin, "time", fake)
    return fake


@pytest.fixture
def bucket(fake_redis: FakeAsyncRedis) -> TokenBucket:
    return TokenBucket(fake_redis, KEYS, "api")


async def _take_all(bucket: TokenBucket, subject: str, limit: RateLimit, tries: int) -> list[bool]:
    return [(await bucket.acquire(subject, limit)).allowed for _ in range(tries)]


async def test_admits_the_burst_at_once_then_refuses_until_a_token_comes(
    bucket: TokenBucket, clock: ServerClock
) -> None:
    limit = RateLimit(rate=2, burst=5)
    assert await _take_all(bucket, "u1", limit, 5) == [True] * 5

    refused = await bucket.acquire("u1", limit)
    assert refused == Decision(allowed=False, remaining=0.0, retry_after_ms=500)
    clock.advance(0.499)
    assert not (await bucket.acquire("u1", limit)).allowed
    clock.advance(0.001)
    assert await bucket.acquire("u1", limit) == Decision(True, 0.0, 0)


async def test_refills_at_the_rate_and_never_beyond_the_burst(
    bucket: TokenBucket, clock: ServerClock
) -> None:
    limit = RateLimit(rate=10, burst=4)
    await _take_all(bucket, "u1", limit, 4)

    clock.advance(0.25)  # 2.5 tokens
    assert await _take_all(bucket, "u1", limit, 3) == [True, True, False]
    refused = await bucket.acquire("u1", limit)
    assert refused.remaining == pytest.approx(0.5)
    assert refused.retry_after_ms == 50

    clock.advance(3600)  # an hour idle saves up only the burst
    assert await _take_all(bucket, "u1", limit, 5) == [True] * 4 + [False]


async def test_a_cost_takes_several_tokens(bucket: TokenBucket, clock: ServerClock) -> None:
    limit = RateLimit(rate=4, burst=10)
    first = await bucket.acquire("u1", limit, cost=4)
    assert first == Decision(True, 6.0, 0)
    assert (await bucket.acquire("u1", limit, cost=4)).allowed

    refused = await bucket.acquire("u1", limit, cost=4)
    assert refused == Decision(False, 2.0, 500)  # 2 more tokens at 4/s
    assert (await bucket.acquire("u1", limit, cost=2)).allowed  # a smaller request still fits


@pytest.mark.parametrize("cost", [0, -1, 11, 1.5, True])
async def test_a_cost_that_could_never_be_allowed_is_refused(
    bucket: TokenBucket, cost: Any
) -> None:
    with pytest.raises(ValueError, match="cost must be an integer from 1 to the burst"):
        await bucket.acquire("u1", RateLimit(rate=1, burst=10), cost=cost)


async def test_an_empty_subject_is_refused(bucket: TokenBucket) -> None:
    with pytest.raises(ValueError, match="subject must not be empty"):
        await bucket.acquire("", RateLimit(rate=1, burst=1))


async def test_buckets_of_other_subjects_and_limiters_are_untouched(
    fake_redis: FakeAsyncRedis, bucket: TokenBucket, clock: ServerClock
) -> None:
    limit = RateLimit(rate=1, burst=3)
    other_limiter = TokenBucket(fake_redis, KEYS, "payments")
    await _take_all(bucket, "u1", limit, 3)
    assert not (await bucket.acquire("u1", limit)).allowed

    assert await _take_all(bucket, "u2", limit, 4) == [True] * 3 + [False]
    assert await _take_all(other_limiter, "u1", limit, 4) == [True] * 3 + [False]
    assert sorted(await fake_redis.keys("t:rl:*")) == [
        "t:rl:api:u1",
        "t:rl:api:u2",
        "t:rl:payments:u1",
    ]


async def test_a_changed_limit_applies_from_the_next_call(
    bucket: TokenBucket, clock: ServerClock
) -> None:
    await _take_all(bucket, "u1", RateLimit(rate=1, burst=10), 2)  # 8 left

    lowered = RateLimit(rate=1, burst=3)
    assert await _take_all(bucket, "u1", lowered, 4) == [True] * 3 + [False]

    faster = RateLimit(rate=100, burst=3)
    clock.advance(0.02)
    assert await _take_all(bucket, "u1", faster, 3) == [True, True, False]


async def test_an_idle_bucket_expires_about_when_it_would_be_full(
    fake_redis: FakeAsyncRedis, bucket: TokenBucket, clock: ServerClock
) -> None:
    await _take_all(bucket, "u1", RateLimit(rate=2, burst=5), 3)

    state = await fake_redis.hgetall("t:rl:api:u1")
    assert float(state["tokens"]) == 2.0
    assert int(state["ts"]) == 1_700_000_000_000_000  # microseconds of Redis time
    # 3 tokens at 2/s is 1.5 s, plus the margin.
    assert 2_400 < await fake_redis.pttl("t:rl:api:u1") <= 2_500


async def test_refusals_write_nothing(
    fake_redis: FakeAsyncRedis, bucket: TokenBucket, clock: ServerClock
) -> None:
    limit = RateLimit(rate=1, burst=1)
    await bucket.acquire("u1", limit)
    before = await fake_redis.hgetall("t:rl:api:u1")
    clock.advance(0.5)
    assert not (await bucket.acquire("u1", limit)).allowed
    assert await fake_redis.hgetall("t:rl:api:u1") == before


async def test_survives_an_emptied_script_cache(
    fake_redis: FakeAsyncRedis, bucket: TokenBucket, clock: ServerClock
) -> None:
    limit = RateLimit(rate=1, burst=2)
    assert (await bucket.acquire("u1", limit)).allowed
    await fake_redis.script_flush()
    assert (await bucket.acquire("u1", limit)).allowed
    assert not (await bucket.acquire("u1", limit)).allowed


def test_a_bucket_is_one_key_and_buckets_spread_over_slots() -> None:
    assert KEYS.rate_limit("gateway:user", "u-42") == "t:rl:gateway:user:u-42"
    # No hash tag: the script touches one key, and clients need not share a slot.
    slots = {key_slot(KEYS.rate_limit("api", f"u{n}").encode()) for n in range(100)}
    assert len(slots) > 90


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        (0, 1, "rate must be a finite number above 0"),
        (-5, 1, "rate must be a finite number above 0"),
        (math.nan, 1, "rate must be a finite number above 0"),
        (math.inf, 1, "rate must be a finite number above 0"),
        ("10", 1, "rate must be a number"),
        (1, 0, "burst must be an integer of at least 1"),
        (1, 2.5, "burst must be an integer of at least 1"),
        (1, True, "burst must be an integer of at least 1"),
    ],
)
def test_invalid_limits_are_refused(rate: Any, burst: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimit(rate=rate, burst=burst)


def test_a_limit_decodes_from_a_config_value() -> None:
    assert msgspec.convert({"rate": 10, "burst": 20}, RateLimit) == RateLimit(10.0, 20)
    with pytest.raises(msgspec.ValidationError, match="burst must be an integer of at least 1"):
        msgspec.convert({"rate": 10, "burst": 0}, RateLimit)


async def test_wait_sleeps_until_the_tokens_come(bucket: TokenBucket) -> None:
    limit = RateLimit(rate=50, burst=1)
    await bucket.acquire("u1", limit)
    loop = asyncio.get_running_loop()
    started = loop.time()

    decision = await bucket.wait("u1", limit, timeout_s=1)
    assert decision.allowed
    assert 0.01 < loop.time() - started < 0.5


async def test_wait_gives_up_at_once_when_the_tokens_cannot_come_in_time(
    bucket: TokenBucket, clock: ServerClock
) -> None:
    limit = RateLimit(rate=1, burst=2)
    await _take_all(bucket, "u1", limit, 2)

    with pytest.raises(RateLimitedError, match="retry in 1000 ms") as caught:
        await asyncio.wait_for(bucket.wait("u1", limit, timeout_s=0.5), 0.1)
    assert isinstance(caught.value, TransientError)
    assert caught.value.retry_after_ms == caught.value.delay_ms == 1000


async def test_wait_with_a_negative_timeout_is_refused(bucket: TokenBucket) -> None:
    with pytest.raises(ValueError, match="timeout_s must not be negative"):
        await bucket.wait("u1", RateLimit(rate=1, burst=1), timeout_s=-1)


async def test_an_absurdly_slow_rate_still_gives_sane_waits(
    fake_redis: FakeAsyncRedis, bucket: TokenBucket, clock: ServerClock
) -> None:
    limit = RateLimit(rate=1e-30, burst=1)
    assert (await bucket.acquire("u1", limit)).allowed
    refused = await bucket.acquire("u1", limit)
    assert refused.retry_after_ms == 2**53
    assert await fake_redis.pttl("t:rl:api:u1") > 0  # not a negative expiry that deletes it
