"""The gateway's error table: every exception to its status, code and headers."""

from __future__ import annotations

import pytest
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from redis.exceptions import ConnectionError as RedisConnectionError

from streamcart.errors import (
    CircuitOpenError,
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    RemoteError,
    RpcTimeoutError,
    StreamcartError,
    UnavailableError,
)
from streamcart.gateway.errors import INTERNAL_MESSAGE, RateLimitedError, http_error
from streamcart.workers.users.tokens import InvalidTokenError


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (NotFoundError("no such user"), 404, "not_found"),
        (InvalidError("bad qty"), 422, "invalid"),
        (DomainError("cannot"), 422, "invalid"),
        (ConflictError("taken"), 409, "conflict"),
        (ForbiddenError("not yours"), 403, "forbidden"),
        (UnavailableError("down"), 503, "unavailable"),
        (RpcTimeoutError("slow"), 504, "timeout"),
        (RedisConnectionError("refused"), 503, "unavailable"),
        (ValidationException("Validation failed"), 400, "bad_request"),
        (ClientException("bad"), 400, "bad_request"),
        (NotFoundException(), 404, "not_found"),
        (RequestEntityTooLarge(), 413, "payload_too_large"),
    ],
)
def test_known_errors_keep_their_message(exc: Exception, status: int, code: str) -> None:
    error = http_error(exc)
    assert (error.status, error.code) == (status, code)
    assert error.message


def test_auth_problems_are_401_with_a_bearer_challenge() -> None:
    error = http_error(InvalidTokenError("invalid token: Signature has expired"))
    assert (error.status, error.code) == (401, "unauthorized")
    assert error.headers == {"WWW-Authenticate": "Bearer"}
    assert "expired" in error.message


@pytest.mark.parametrize(("retry_after_ms", "seconds"), [(1, "1"), (1000, "1"), (1001, "2")])
def test_rate_limited_is_429_with_retry_after_rounded_up(retry_after_ms: int, seconds: str) -> None:
    error = http_error(RateLimitedError("slow down", retry_after_ms=retry_after_ms))
    assert (error.status, error.code) == (429, "rate_limited")
    assert error.headers == {"Retry-After": seconds}


def test_an_open_circuit_is_503_with_retry_after() -> None:
    error = http_error(CircuitOpenError("users", retry_after_s=2.5))
    assert (error.status, error.code) == (503, "unavailable")
    assert error.headers == {"Retry-After": "3"}


def test_validation_details_are_part_of_the_message() -> None:
    exc = ValidationException(
        "Validation failed for POST /x",
        extra=[{"message": "Object contains unknown field `admin`", "key": "admin"}],
    )
    assert "unknown field `admin`" in http_error(exc).message


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("secret detail"),
        RemoteError("weird", "secret detail"),
        StreamcartError("secret detail"),
        HTTPException("secret detail"),
        RecursionError("maximum recursion depth exceeded"),
    ],
)
def test_anything_unexpected_is_a_generic_500(exc: Exception) -> None:
    error = http_error(exc)
    assert (error.status, error.code, error.message) == (500, "internal", INTERNAL_MESSAGE)


def test_a_body_too_deep_to_decode_is_400() -> None:
    exc = RecursionError("maximum recursion depth exceeded while deserializing an object")
    assert http_error(exc).status == 400
