"""The gateway's OpenAPI document: its error responses and its security scheme.

Every error status a route can answer is documented with the one error body
(:class:`~streamcart.gateway.errors.ErrorBody`, contract section 5), replacing
the body Litestar documents for its own ``ValidationException`` on 400.
Routes that need a token say so through :func:`streamcart.gateway.access.signed_in`.
"""

from __future__ import annotations

from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, Example, SecurityScheme

from streamcart import __version__
from streamcart.gateway.errors import ErrorBody

BEARER = "BearerToken"

# What each error status means on this gateway, and the code its body carries.
_ERRORS: dict[int, tuple[str, str]] = {
    400: (
        "bad_request",
        "The body is not JSON, misses a field, has an unknown one, "
        "or a field breaks its constraints",
    ),
    401: ("unauthorized", "No valid Bearer token (answered with WWW-Authenticate: Bearer)"),
    403: ("forbidden", "Refused: wrong credentials, or the caller lacks the role"),
    404: ("not_found", "No such resource"),
    409: ("conflict", "Conflicts with the current state (e.g. the email is registered already)"),
    413: ("payload_too_large", "The body is over the gateway's size limit"),
    422: ("invalid", "Well-formed but refused by the service's rules"),
    429: ("rate_limited", "Too many requests from this client; see Retry-After"),
    503: ("unavailable", "A service or the message bus is unavailable; may carry Retry-After"),
    504: ("timeout", "The service did not answer in time"),
}
# Every route that calls a service: the client's budget, the service's health and latency.
SERVICE_ERRORS = (429, 503, 504)


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The ``responses=`` of a route that can answer ``statuses``, each with the error body."""
    return {status: _error_response(status) for status in sorted(set(statuses))}


def _error_response(status: int) -> ResponseSpec:
    code, description = _ERRORS[status]
    example = {"error": {"code": code, "message": description}}
    return ResponseSpec(
        ErrorBody,
        description=description,
        generate_examples=False,
        examples=[Example(summary=code, value=example)],
    )


def openapi_config(title: str = "streamcart gateway") -> OpenAPIConfig:
    """The document served at ``/schema``, with the Bearer scheme declared."""
    return OpenAPIConfig(
        title=title,
        version=__version__,
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="A token from POST /api/users/login",
                )
            }
        ),
    )
