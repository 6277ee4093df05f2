"""Per-client rate limiting with Redis token buckets.

The client is the verified Bearer subject when the request carries a valid
token (so one user is one budget whatever address they come from), else the
client address (behind trusted proxies, the one they report: see
:mod:`..forwarded`, which runs first). A refused request is answered 429 with ``Retry-After``. When
the limiter itself cannot reach Redis the request goes through: the service
call behind it reports the outage with the right status.
"""

from __future__ import annotations

import logging

from litestar.datastructures import Headers
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from redis.exceptions import RedisError

from streamcart.gateway.auth import Authenticator
from streamcart.gateway.client_address import bucket_subject
from streamcart.gateway.errors import RateLimitedError
from streamcart.gateway.settings import LiveSettings
from streamcart.resilience.ratelimit import RateLimit, TokenBucket
from streamcart.workers.users.tokens import InvalidTokenError

log = logging.getLogger("streamcart.gateway")
DEFAULT_LIMIT = RateLimit(rate=20, burst=40)
# Route handlers with this opt set are never limited (probes, metrics scrapes).
EXEMPT_OPT = "rate_limit_exempt"


class RateLimitMiddleware(ASGIMiddleware):
    """Takes one token per request from the client's bucket."""

    exclude_opt_key = EXEMPT_OPT

    def __init__(
        self,
        bucket: TokenBucket,
        authenticator: Authenticator,
        limit: RateLimit | LiveSettings = DEFAULT_LIMIT,
    ) -> None:
        self.bucket = bucket
        self.authenticator = authenticator
        # A fixed limit, or the config store's current one (changed without a restart).
        self.limit = limit

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        subject = await self._subject(scope)
        limit = (
            self.limit if isinstance(self.limit, RateLimit) else (await self.limit.current()).limit
        )
        try:
            decision = await self.bucket.acquire(subject, limit)
        except RedisError as exc:
            log.warning("rate limiter unavailable (%s); letting the request through", exc)
        else:
            if not decision.allowed:
                raise RateLimitedError(
                    f"too many requests; retry in {decision.retry_after_ms} ms",
                    retry_after_ms=decision.retry_after_ms,
                )
        await next_app(scope, receive, send)

    async def _subject(self, scope: Scope) -> str:
        headers = Headers.from_scope(scope)
        if "authorization" in headers:
            try:
                claims = await self.authenticator.claims(headers)
            except (InvalidTokenError, RedisError):
                pass  # the route decides what a bad token means; limit by address
            else:
                return f"user:{claims.sub}"
        client = scope.get("client")
        return f"addr:{bucket_subject(client[0]) if client else 'unknown'}"
