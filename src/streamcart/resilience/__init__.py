"""Token-bucket limiter, circuit breaker and retry policies."""
