"""Request counts and latencies of the gateway process, for ``/metrics``.

Labelled by the route's path template (``/api/users/register``), never the
raw path, so ids in paths cannot grow the series without bound. The metrics
live in a registry of their own, one per app, so two apps in one process
(tests) never share or clash.
"""

from __future__ import annotations

import time

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram

from streamcart.gateway.errors import http_error

# From a cached health probe (~1 ms) to a call that hits the RPC timeout (5 s+).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """The gateway's metric set, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "streamcart_gateway_requests",
            "HTTP requests answered, by method, route and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "streamcart_gateway_request_seconds",
            "Time from a request's arrival to the start of its response, by method and route.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


class MetricsMiddleware(ASGIMiddleware):
    """Counts every response of a matched route and times it."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        method = str(scope.get("method", "-"))
        route = str(scope.get("path_template", scope["path"]))
        status = 500  # what the client gets if nothing was sent

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await next_app(scope, receive, counting_send)
        except Exception as exc:
            # Raised by an inner middleware (a 429): the app-level handler answers it.
            status = http_error(exc).status
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            raise
        finally:
            self.metrics.requests.labels(method, route, str(status)).inc()
