"""Domain errors to HTTP: one table, one body shape.

Every error response is ``{"error": {"code": ..., "message": ...}}`` (DESIGN
section 5); a 5xx one also names the request's ``trace_id``. Handlers and
middleware raise; the exception handlers registered here turn whatever
escapes into that body with the right status, so no route builds an error
response by hand. Only messages written for clients reach them: an unexpected
error is logged, and answered with a generic message.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap
from redis.exceptions import RedisError

from streamcart.errors import (
    CircuitOpenError,
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    RpcTimeoutError,
    StreamcartError,
    UnavailableError,
)
from streamcart.gateway.middleware.trace import trace_id_of
from streamcart.workers.users.tokens import InvalidTokenError

log = logging.getLogger("streamcart.gateway")
INTERNAL_MESSAGE = "internal error; the trace id identifies it in the gateway's log"


class RateLimitedError(StreamcartError):
    """The client's token bucket is empty; it may retry after ``retry_after_ms``."""

    def __init__(self, message: str, *, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class ErrorDetail(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    message: str
    # On a 5xx: what the gateway's log, the services' logs and the trace know it by.
    trace_id: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every error response."""

    error: ErrorDetail


class HttpError(msgspec.Struct, frozen=True):
    """What an exception becomes on the wire."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = {}


# Most specific first: CircuitOpenError is an UnavailableError with a known wait.
_DOMAIN: tuple[tuple[type[Exception], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (ForbiddenError, 403),
    (InvalidError, 422),
    (DomainError, 422),
    (UnavailableError, 503),
    (RpcTimeoutError, 504),
)
# Litestar's own exceptions (routing, body size, decoding) by status.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def retry_after_header(milliseconds: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds, rounded up and at least 1: a client
    that waits the advertised time must find the resource ready."""
    return {"Retry-After": str(max(1, math.ceil(milliseconds / 1000)))}


def http_error(exc: Exception) -> HttpError:
    """The status, code, message and headers for ``exc``; 500 for anything unknown."""
    if isinstance(exc, InvalidTokenError):
        return HttpError(401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, RateLimitedError):
        return HttpError(429, "rate_limited", str(exc), retry_after_header(exc.retry_after_ms))
    if isinstance(exc, CircuitOpenError):
        headers = retry_after_header(exc.retry_after_s * 1000)
        return HttpError(503, UnavailableError.code, str(exc), headers)
    for cls, status in _DOMAIN:
        if isinstance(exc, cls):
            return HttpError(status, getattr(exc, "code", "invalid"), str(exc))
    if isinstance(exc, HTTPException):
        return _from_http_exception(exc)
    if isinstance(exc, RedisError):
        # Redis is the bus: without it no service can be reached. Its own
        # message may name hosts, so it stays in the log.
        log.warning("redis error: %s", exc)
        return HttpError(503, UnavailableError.code, "the message bus is unavailable")
    if isinstance(exc, RecursionError) and "deserializ" in str(exc):
        # msgspec gives up on a body nested deeper than the stack allows; the
        # client's fault, not ours. Any other recursion error stays a 500.
        return HttpError(400, "bad_request", "the JSON body is nested too deeply")
    return HttpError(500, "internal", INTERNAL_MESSAGE)


def _from_http_exception(exc: HTTPException) -> HttpError:
    status = exc.status_code
    if status >= 500:
        return HttpError(status, "internal", INTERNAL_MESSAGE)
    message = exc.detail
    # A validation failure lists what was wrong in ``extra``; that is the useful part.
    if isinstance(exc.extra, list):
        reasons = [str(item.get("message", item)) for item in exc.extra if isinstance(item, dict)]
        if reasons:
            message = f"{message}: {'; '.join(reasons)}"
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() != "content-type"}
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return HttpError(status, _HTTP_CODES.get(status, "error"), message, headers)


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """The exception handler for every exception that reaches the app."""
    error = http_error(exc)
    trace_id = trace_id_of(request.scope) if error.status >= 500 else None
    if error.status == 500:
        # Only the unexpected is logged with its traceback; a 503 or 504 is a known state.
        log.error(
            "%s %s failed (trace %s)", request.method, request.url.path, trace_id, exc_info=exc
        )
    return Response(
        ErrorBody(ErrorDetail(error.code, error.message, trace_id)),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


def error_handlers() -> ExceptionHandlersMap:
    """The app's ``exception_handlers``: one handler for everything."""
    return {Exception: error_response}
