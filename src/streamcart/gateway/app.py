"""The gateway app, composed explicitly: routes, middleware, hooks and lifespan as lists.

:func:`create_app` builds a :class:`~litestar.Litestar` around a Redis client
the caller owns; :func:`gateway_main` is the process entry point the CLI uses,
owning its client and serving with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

import uvicorn
from litestar import Litestar
from litestar.datastructures import State
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamcart.app import configure_logging
from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.gateway.auth import Authenticator
from streamcart.gateway.dependencies import AUTHENTICATOR, SERVICES
from streamcart.gateway.errors import error_handlers
from streamcart.gateway.login_limit import LOGIN_LIMITER, LoginLimiter
from streamcart.gateway.middleware.deadline import DeadlineMiddleware
from streamcart.gateway.middleware.forwarded import ForwardedMiddleware
from streamcart.gateway.middleware.metrics import GatewayMetrics, MetricsMiddleware
from streamcart.gateway.middleware.ratelimit import RateLimitMiddleware
from streamcart.gateway.middleware.trace import add_trace_id
from streamcart.gateway.middleware.tracing import TracingMiddleware
from streamcart.gateway.openapi import openapi_config
from streamcart.gateway.routes import (
    admin,
    cart,
    health,
    inventory,
    orders,
    products,
    reviews,
    users,
)
from streamcart.gateway.services import Services
from streamcart.gateway.settings import LiveSettings
from streamcart.resilience import breaker_board
from streamcart.resilience.breaker import Breakers
from streamcart.resilience.ratelimit import RateLimit, TokenBucket
from streamcart.telemetry.export import setup_tracing, use_globally
from streamcart.workers.users.signing_keys import from_environment
from streamcart.workers.users.tokens import SigningKeys

log = logging.getLogger("streamcart.gateway")
RATE_LIMITER = "gateway:client"


BREAKER_REPORT_S = 5.0


def create_app(
    redis: Redis,
    keys: Keys,
    *,
    rpc_timeout_s: float = 5.0,
    request_timeout_s: float = 5.0,
    max_body_bytes: int = 1_000_000,
    limit: RateLimit | None = None,
    breakers: Breakers | None = None,
    signing_keys: SigningKeys | None = None,
) -> Litestar:
    """The gateway over ``redis`` in the namespace of ``keys``.

    ``limit`` fixes each client's request budget; without it the budget is
    the config store's ``gateway`` scope (``rate``, ``burst``), live, as are
    the trusted proxies and the login limits; ``max_body_bytes`` caps a
    request body (413 beyond it, checked on ``Content-Length`` and while
    reading a streamed body, before any decoding). A request unanswered after
    ``request_timeout_s`` is a 504, however many calls it made; each service
    call also gives up after ``rpc_timeout_s``. The app's lifespan starts
    and stops its RPC client; it never closes ``redis``. Tokens are verified
    with ``signing_keys``, by default those of the environment.

    Raises:
        ConfigurationError: no ``signing_keys`` given and the environment has
            none (or a bad one): the gateway does not start without them.
    """
    services = Services(redis, keys, timeout_s=rpc_timeout_s, breakers=breakers)
    authenticator = Authenticator(signing_keys or from_environment())
    metrics = GatewayMetrics()
    settings = LiveSettings(redis, keys)

    @contextlib.asynccontextmanager
    async def rpc_lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            await services.start()
        except (RedisError, OSError) as exc:
            # Start anyway: /healthz answers and /readyz says why; the RPC
            # client starts on the first call once Redis is back.
            log.warning("redis unavailable at start-up (%s); the gateway is not ready", exc)
        reporter = asyncio.create_task(_report_breakers(redis, keys, services.breakers))
        try:
            yield
        finally:
            reporter.cancel()
            await asyncio.wait([reporter], timeout=2)
            await services.aclose()

    return Litestar(
        route_handlers=[
            *users.routes(),
            *products.routes(),
            *cart.routes(),
            *orders.routes(),
            *reviews.routes(),
            *inventory.routes(),
            *admin.routes(),
            *health.routes(),
        ],
        middleware=[
            TracingMiddleware(),
            MetricsMiddleware(metrics),
            DeadlineMiddleware(request_timeout_s),
            # Inside the deadline: it may read the settings from Redis.
            ForwardedMiddleware(settings),
            RateLimitMiddleware(
                TokenBucket(redis, keys, RATE_LIMITER),
                authenticator,
                limit if limit is not None else settings,
            ),
        ],
        before_send=[add_trace_id],
        lifespan=[rpc_lifespan],
        exception_handlers=error_handlers(),
        state=State(
            {
                SERVICES: services,
                AUTHENTICATOR: authenticator,
                LOGIN_LIMITER: LoginLimiter(redis, keys, settings),
                health.METRICS: metrics,
            }
        ),
        request_max_body_size=max_body_bytes,
        openapi_config=openapi_config(),
        # The gateway logs through the process's own logging setup.
        logging_config=None,
        debug=False,
    )


async def _report_breakers(redis: Redis, keys: Keys, breakers: Breakers) -> None:
    """Publish the breakers' states for `streamcart status`, every few seconds."""
    owner = f"gateway@{socket.gethostname()}:{os.getpid()}"
    while True:
        try:
            await breaker_board.publish(redis, keys, owner, breakers.snapshots())
        except (RedisError, OSError) as exc:
            log.debug("breaker report failed: %s", exc)
        await asyncio.sleep(BREAKER_REPORT_S)


def gateway_main(redis_url: str, namespace: str, host: str, port: int, level: int) -> None:
    """Serve the gateway on ``host:port`` until SIGINT or SIGTERM (uvicorn handles both)."""
    configure_logging(level)
    tracer = setup_tracing("gateway", redis_url, Keys(namespace))
    if tracer is not None:
        use_globally(tracer)
    try:
        asyncio.run(_serve(redis_url, namespace, host, port, level))
    finally:
        if tracer is not None:
            tracer.shutdown()  # exports what is buffered


async def _serve(redis_url: str, namespace: str, host: str, port: int, level: int) -> None:
    redis = connect(redis_url)
    try:
        app = create_app(redis, Keys(namespace))
        # No proxy_headers: the app reads X-Forwarded-For itself, from the
        # proxies the config store trusts (ForwardedMiddleware).
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=level,
            access_log=False,
            lifespan="on",
            proxy_headers=False,
        )
        log.info("gateway listening on http://%s:%d", host, port)
        await uvicorn.Server(config).serve()
    finally:
        await redis.aclose()
