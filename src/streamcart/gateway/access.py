"""Who may call a route, checked before anything else about the request.

A route that needs a token takes its options from :func:`signed_in`: a guard
(litestar runs guards before it reads the body, so an anonymous caller learns
nothing from validation errors) and the OpenAPI security requirement that says
so, naming the role where one is needed, as OpenAPI 3.1 allows for http schemes.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from streamcart.gateway.auth import Authenticator, require_role
from streamcart.gateway.dependencies import AUTHENTICATOR, CLAIMS
from streamcart.gateway.openapi import BEARER
from streamcart.workers.users.tokens import Claims, InvalidTokenError

ROLE = "role"
ADMIN = "admin"


def signed_in(role: str | None = None) -> dict[str, Any]:
    """The route options of a route for holders of a valid token (with ``role``)."""
    return {
        "guards": [_check_token],
        "opt": {ROLE: role},
        "security": [{BEARER: [role] if role else []}],
    }


def visible_to(claims: Claims, owner_id: str) -> bool:
    """Whether the caller may see what ``owner_id`` owns: the owner or an admin.

    Routes answer anyone else exactly as they answer a missing resource, so
    nobody learns which ids exist.
    """
    return claims.sub == owner_id or claims.role == ADMIN


async def _check_token(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    authenticator: Authenticator = connection.app.state[AUTHENTICATOR]
    claims = await authenticator.claims(connection.headers)
    role = handler.opt.get(ROLE)
    if role is not None:
        require_role(claims, role)
    connection.state[CLAIMS] = claims


async def optional_claims(connection: ASGIConnection[Any, Any, Any, Any]) -> Claims | None:
    """The caller's claims on a public route: ``None`` without a valid token,
    never an error (a stale token still gets the public answer)."""
    if "authorization" not in connection.headers:
        return None
    authenticator: Authenticator = connection.app.state[AUTHENTICATOR]
    try:
        return await authenticator.claims(connection.headers)
    except InvalidTokenError:
        return None
