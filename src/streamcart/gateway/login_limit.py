"""Login attempts limited per account and per client address.

The gateway's request budget is per client; guessing passwords needs a
tighter one. Each attempt takes a token from the client address's login
bucket, then from the account's (the email as accounts are keyed, hashed so
the limiter's keys hold no email): one client cannot lock every
account out, and a guesser spread over many addresses still gets an
account's few attempts a minute. A refusal is a 429 with ``Retry-After``.
When Redis cannot be reached the attempt goes through, as with the request
budget: the login call itself then reports the outage.
"""

from __future__ import annotations

import hashlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamcart.bus.keys import Keys
from streamcart.gateway.client_address import bucket_subject
from streamcart.gateway.errors import RateLimitedError
from streamcart.gateway.settings import LiveSettings
from streamcart.resilience.ratelimit import TokenBucket
from streamcart.workers.users.accounts import canonical_email

log = logging.getLogger("streamcart.gateway")
LIMITER = "gateway:login"
# The app state's key for the limiter.
LOGIN_LIMITER = "login_limiter"


class LoginLimiter:
    """Admits a login attempt, or raises :class:`RateLimitedError`."""

    def __init__(self, redis: Redis, keys: Keys, settings: LiveSettings) -> None:
        self.bucket = TokenBucket(redis, keys, LIMITER)
        self.settings = settings

    async def admit(self, email: str, address: str) -> None:
        """Take one attempt from ``address``'s and then ``email``'s bucket.

        Raises:
            RateLimitedError: either bucket is empty; ``retry_after_ms`` says
                when it holds an attempt again.
        """
        current = await self.settings.current()
        account = hashlib.sha256(canonical_email(email).encode()).hexdigest()[:32]
        checks = (
            (f"addr:{bucket_subject(address)}", current.login_per_address, "from this address"),
            (f"account:{account}", current.login_per_account, "for this account"),
        )
        for subject, limit, whose in checks:
            try:
                decision = await self.bucket.acquire(subject, limit)
            except RedisError as exc:
                log.warning("login limiter unavailable (%s); letting the attempt through", exc)
                return
            if not decision.allowed:
                raise RateLimitedError(
                    f"too many login attempts {whose}; retry in {decision.retry_after_ms} ms",
                    retry_after_ms=decision.retry_after_ms,
                )
