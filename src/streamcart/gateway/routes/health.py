"""Liveness, readiness and Prometheus metrics; never rate limited."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.types import ControllerRouterHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from streamcart.errors import UnavailableError
from streamcart.gateway.dependencies import services_of
from streamcart.gateway.middleware.metrics import GatewayMetrics
from streamcart.gateway.middleware.ratelimit import EXEMPT_OPT
from streamcart.gateway.openapi import error_responses

log = logging.getLogger("streamcart.gateway")
METRICS = "metrics"
# A service without which the gateway can do nothing useful.
ESSENTIAL = ("users",)
PING_TIMEOUT_S = 2.0
_EXEMPT = {EXEMPT_OPT: True}


class Status(msgspec.Struct, frozen=True):
    status: str


@get("/healthz", opt=_EXEMPT)
async def healthz() -> Status:
    """Liveness: the process answers."""
    return Status("ok")


@get("/readyz", opt=_EXEMPT, responses=error_responses(503))
async def readyz(state: State) -> Status:
    """Readiness: Redis answers and every essential service has a live instance.

    Raises:
        UnavailableError: answered 503 with the reason.
    """
    services = services_of(state)
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            try:
                await services.redis.ping()
            except RedisConnectionError:
                # Right after Redis comes back the pool may hand out a connection
                # that died with the old server: one fresh try decides.
                await services.redis.ping()
            for service in ESSENTIAL:
                if not await services.discovery.is_available(service):
                    raise UnavailableError(f"the {service} service has no live instance")
    except (RedisError, OSError, TimeoutError) as exc:
        # Its words (LOADING, a host and port) are for the operator, not the client.
        log.warning("readiness: redis does not answer: %s", exc or type(exc).__name__)
        raise UnavailableError("redis does not answer") from exc
    return Status("ready")


@get("/metrics", opt=_EXEMPT, media_type=CONTENT_TYPE_LATEST)
async def metrics(state: State) -> Response[bytes]:
    """The gateway process's metrics in the Prometheus text format."""
    gateway_metrics: GatewayMetrics = state[METRICS]
    return Response(generate_latest(gateway_metrics.registry), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[ControllerRouterHandler]:
    return [healthz, readyz, metrics]
