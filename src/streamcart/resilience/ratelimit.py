"""Token buckets in Redis, shared by every process that names the same bucket.

One script refills and takes tokens atomically on the server, reading the
server's clock (``TIME``), so any number of gateway or worker instances on
hosts with skewed clocks enforce one limit together (PITFALLS 14). A bucket is
a single hash, ``<ns>:rl:<name>:<subject>``; it expires once it would be full
again, so idle clients leave nothing behind.

The limit is an argument of every call rather than part of the bucket, so a
limit read from the config store applies from the next call on: no restart,
no state to migrate. A lowered ``burst`` caps the tokens already saved.
"""

from __future__ import annotations

import asyncio
import math
import random

import msgspec
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.scripts import Script
from streamcart.errors import TransientError

_take = Script("ratelimit.lua", "streamcart.resilience")
# Spread the retries of callers refused at the same moment, so they do not
# all come back in the same millisecond to find one token between them.
_JITTER = 0.1


class RateLimit(msgspec.Struct, frozen=True):
    """``rate`` tokens per second, saved up to ``burst``.

    A valid config value too: ``{"rate": 10, "burst": 20}`` decodes into one,
    and an invalid one fails the decode with the same message.

    Raises:
        ValueError: ``rate`` is not a finite number above 0, or ``burst`` is
            not an integer of at least 1.
    """

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
            raise ValueError(f"rate must be a number of tokens per second, got {self.rate!r}")
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a finite number above 0 per second, got {self.rate}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an integer of at least 1, got {self.burst!r}")


class Decision(msgspec.Struct, frozen=True):
    """The answer to one request for tokens.

    ``remaining`` is the tokens left in the bucket (fractional: it refills
    continuously); ``retry_after_ms`` is 0 when allowed, else the wait until
    the bucket holds the tokens asked for, if nobody takes them first.
    """

    allowed: bool
    remaining: float
    retry_after_ms: int


class RateLimitedError(TransientError):
    """The tokens did not come in time; retry after ``retry_after_ms``.

    A handler that lets it escape has its message retried after that delay.
    """

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message, delay_ms=retry_after_ms)
        self.retry_after_ms = retry_after_ms


class TokenBucket:
    """The buckets of one limiter, one per subject (a user, an address, "all").

    ``name`` says what is limited (``gateway:user``, ``payments:provider``);
    ``subject`` says whose tokens these are. A global limit shared by all
    instances is simply one fixed subject.
    """

    __slots__ = ("keys", "name", "redis")

    def __init__(self, redis: Redis, keys: Keys, name: str) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name

    async def acquire(self, subject: str, limit: RateLimit, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``subject``'s bucket if it holds them; never waits.

        Raises:
            ValueError: ``subject`` is empty, or ``cost`` is below 1 or above
                ``limit.burst`` (such a request could never be allowed).
            redis.exceptions.RedisError: the server could not be reached or
                refused the script.
        """
        if not subject:
            raise ValueError(f"rate limiter {self.name!r}: the subject must not be empty")
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= limit.burst:
            raise ValueError(
                f"rate limiter {self.name!r}: cost must be an integer from 1 to the burst "
                f"({limit.burst}), got {cost!r}"
            )
        key = self.keys.rate_limit(self.name, subject)
        allowed, remaining, retry_after_ms = await _take(
            self.redis, [key], [limit.rate, limit.burst, cost]
        )
        return Decision(bool(allowed), float(remaining), int(retry_after_ms))

    async def wait(
        self, subject: str, limit: RateLimit, cost: int = 1, *, timeout_s: float
    ) -> Decision:
        """Take ``cost`` tokens, sleeping until they come or ``timeout_s`` runs out.

        Gives up at once, without sleeping, when the tokens cannot come before
        the deadline: the caller can requeue its work with that delay instead.

        Raises:
            RateLimitedError: the tokens would not be there before the
                deadline; ``retry_after_ms`` is the latest wait reported.
            ValueError: as :meth:`acquire`, or ``timeout_s`` is negative.
            redis.exceptions.RedisError: as :meth:`acquire`.
        """
        if timeout_s < 0:
            raise ValueError(f"timeout_s must not be negative, got {timeout_s}")
        loop = asyncio.get_running_loop()
        # A local deadline is fine here: it bounds this caller's own wait and
        # is never compared with another host's clock.
        deadline = loop.time() + timeout_s
        while True:
            decision = await self.acquire(subject, limit, cost)
            if decision.allowed:
                return decision
            left_s = deadline - loop.time()
            pause_s = decision.retry_after_ms / 1000
            if pause_s > left_s:
                raise RateLimitedError(
                    f"rate limiter {self.name!r} for {subject!r}: no {cost} token(s) within "
                    f"{timeout_s}s at {limit.rate}/s (burst {limit.burst}); "
                    f"retry in {decision.retry_after_ms} ms",
                    retry_after_ms=decision.retry_after_ms,
                )
            await asyncio.sleep(min(left_s, pause_s * (1 + _JITTER * random.random())))
