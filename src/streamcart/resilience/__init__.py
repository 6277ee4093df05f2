"""Token-bucket limiter, circuit breaker and retry policies."""

from streamcart.resilience.breaker import Breakers, BreakerSettings, CircuitBreaker
from streamcart.resilience.ratelimit import Decision, RateLimit, RateLimitedError, TokenBucket

__all__ = [
    "BreakerSettings",
    "Breakers",
    "CircuitBreaker",
    "Decision",
    "RateLimit",
    "RateLimitedError",
    "TokenBucket",
]
