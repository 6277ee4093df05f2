"""Bearer authentication and role checks.

``Authorization: Bearer <token>`` is verified with the namespace's signing
secret (:mod:`streamcart.workers.users.tokens`). Anything short of a valid
token is an :class:`InvalidTokenError`, which the gateway answers with 401.
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.errors import ForbiddenError
from streamcart.workers.users.tokens import Claims, InvalidTokenError, signing_secret, verify

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
    """Verifies Bearer tokens against the namespace's signing secret.

    The secret is read once and kept: it is created once per namespace and
    never rotated while a gateway runs, and reading it on every request would
    add two round trips to each authenticated call.
    """

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._secret: bytes | None = None

    async def secret(self) -> bytes:
        if self._secret is None:
            self._secret = await signing_secret(self.redis, self.keys)
        return self._secret

    async def claims(self, headers: Mapping[str, str]) -> Claims:
        """The verified claims of the request's Bearer token.

        Raises:
            InvalidTokenError: no header, wrong scheme, malformed, forged,
                expired or not yet valid.
        """
        token = bearer_token(headers)
        return verify(await self.secret(), token)


def require_role(claims: Claims, role: str) -> Claims:
    """``claims`` when they carry ``role``.

    Raises:
        ForbiddenError: the caller is authenticated but lacks the role.
    """
    if claims.role != role:
        raise ForbiddenError(f"this needs the {role!r} role")
    return claims
