"""Bearer authentication and role checks.

``Authorization: Bearer <token>`` is verified with the key its header names,
among the current and previous signing keys
(:mod:`streamcart.workers.users.tokens`). Anything short of a valid token,
one signed with a retired key included, is an :class:`InvalidTokenError`,
which the gateway answers with 401.
"""

from __future__ import annotations

from collections.abc import Mapping

from streamcart.errors import ForbiddenError
from streamcart.workers.users.tokens import Claims, InvalidTokenError, SigningKeys, verify

SCHEME = "bearer"


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer`` header.

    Raises:
        InvalidTokenError: no header, another scheme, or no token after it.
    """
    value = headers.get("authorization")
    if not value:
        raise InvalidTokenError(
            "missing Authorization header; send 'Authorization: Bearer <token>'"
        )
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != SCHEME:
        raise InvalidTokenError(f"unsupported authorization scheme {scheme!r}; use Bearer")
    token = token.strip()
    if not token or " " in token:
        raise InvalidTokenError("malformed Bearer token")
    return token


class Authenticator:
    """Verifies Bearer tokens against the signing keys the gateway started with
    (a rotation restarts the gateways, before the users workers)."""

    def __init__(self, keys: SigningKeys) -> None:
        self.keys = keys

    async def claims(self, headers: Mapping[str, str]) -> Claims:
        """The verified claims of the request's Bearer token.

        Raises:
            InvalidTokenError: no header, wrong scheme, malformed, forged,
                expired, not yet valid, or signed with a key not in use.
        """
        return verify(self.keys, bearer_token(headers))


def require_role(claims: Claims, role: str) -> Claims:
    """``claims`` when they carry ``role``.

    Raises:
        ForbiddenError: the caller is authenticated but lacks the role.
    """
    if claims.role != role:
        raise ForbiddenError(f"this needs the {role!r} role")
    return claims
