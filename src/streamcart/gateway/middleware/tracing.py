"""A server span around each request.

Outermost middleware: each matched request runs inside a server span, a
child of the client's ``traceparent`` header when it sends one, so every call
and message the request causes joins its trace; the response's
``X-Trace-Id`` names that trace.
"""

from __future__ import annotations

import uuid

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry.trace import SpanKind, Status, StatusCode

from streamcart.bus.envelope import TRACEPARENT, TRACESTATE
from streamcart.gateway.errors import http_error
from streamcart.gateway.middleware.trace import set_trace_id
from streamcart.telemetry import tracing

_CONTEXT_HEADERS = {TRACEPARENT.encode(), TRACESTATE.encode()}
_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})


def _untraced(scope: Scope) -> bool:
    path = str(scope["path"])
    return path in _UNTRACED or path.startswith("/schema")


class TracingMiddleware(ASGIMiddleware):
    """A server span per request, named by method and route template."""

    # Probes, metrics scrapes and the API document: frequent, and no one's request.
    should_bypass_for_scope = staticmethod(_untraced)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        tracer = tracing.current
        if tracer is None:
            await next_app(scope, receive, send)
            return
        context = {
            name.decode(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in _CONTEXT_HEADERS
        }
        method = str(scope.get("method", "-"))
        route = str(scope.get("path_template", scope["path"]))
        attributes = {
            "http.request.method": method,
            "http.route": route,
            "url.path": str(scope["path"]),
        }
        span = tracer.start_handling(
            context, lambda: (f"{method} {route}", SpanKind.SERVER, attributes)
        )
        if span is None and TRACEPARENT not in context:
            # Not sampled: one id for the response header and whatever the request sends on.
            context[TRACEPARENT] = tracing.new_unsampled_traceparent()
        trace_parent = context.get(TRACEPARENT, "")
        set_trace_id(scope, (
            f"{span.get_span_context().trace_id:032x}" if span is not None
            else trace_parent.split("-")[1] if trace_parent.count("-") == 3
            else uuid.uuid4().hex
        ))  # fmt: skip

        async def recording_send(message: Message) -> None:
            if span is not None and message["type"] == "http.response.start":
                status = int(message["status"])
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
            await send(message)

        # Statuses, not exceptions, say whether a request failed (a 4xx is the client's).
        with tracing.activated(span, context, errors=False):
            try:
                await next_app(scope, receive, recording_send)
            except Exception as exc:
                # An inner middleware's refusal (a 429) is answered by the app's handler.
                status = http_error(exc).status
                if span is not None:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        tracing.failed(span, exc)
                raise
