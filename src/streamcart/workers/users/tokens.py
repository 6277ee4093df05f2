"""Bearer tokens: signed (HS256), expiring, carrying the user id and role.

The signing secret comes from ``STREAMCART_JWT_SECRET`` when set; otherwise
one is generated on first use and kept in Redis (``SET NX``), so every
gateway and users worker of a namespace agrees on it without configuration.
"""

from __future__ import annotations

import os
import secrets
import time

import jwt
import msgspec
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.errors import ConfigurationError, StreamcartError

ALGORITHM = "HS256"
ROLES = ("user", "admin")
SECRET_ENV = "STREAMCART_JWT_SECRET"


class InvalidTokenError(StreamcartError):
    """The token is missing, malformed, forged, expired or not yet valid."""


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    sub: str  # the user id
    role: str
    iat: int
    nbf: int
    exp: int


async def signing_secret(redis: Redis, keys: Keys) -> bytes:
    """The namespace's signing secret (env first, else created once in Redis)."""
    configured = os.environ.get(SECRET_ENV)
    if configured:
        return configured.encode()
    key = keys.state("users", "jwt-secret")
    # One step: a separate GET racing a delete read None, and signed with b"None".
    fresh = secrets.token_urlsafe(48)
    stored = await redis.set(key, fresh, nx=True, get=True)
    secret = fresh if stored is None else stored
    if not secret:
        raise ConfigurationError(f"the token signing secret at {key} is empty; delete it")
    return str(secret).encode()


def issue(
    secret: bytes, user_id: str, role: str, *, ttl_s: int = 3600, now: int | None = None
) -> tuple[str, int]:
    """A token for ``user_id`` with ``role``; returns (token, expires_at Unix seconds)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    issued = int(time.time()) if now is None else now
    expires = issued + ttl_s
    claims = {"sub": user_id, "role": role, "iat": issued, "nbf": issued, "exp": expires}
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires


def verify(secret: bytes, token: str, *, now: int | None = None) -> Claims:
    """The claims of a valid token.

    Only HS256 is accepted (``alg: none`` and every other algorithm are
    refused), the signature must match, and ``exp``/``nbf`` must hold.

    Raises:
        InvalidTokenError: with the reason, for any token that is not valid now.
    """
    required = ["sub", "role", "iat", "nbf", "exp"]
    try:
        if now is None:
            decoded = jwt.decode(
                token, secret, algorithms=[ALGORITHM], options={"require": required}
            )
        else:  # tests pin the clock: check exp/nbf ourselves against it
            decoded = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={"require": required, "verify_exp": False, "verify_nbf": False},
            )
            if decoded["exp"] <= now:
                raise jwt.ExpiredSignatureError("Signature has expired")
            if decoded["nbf"] > now:
                raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
        claims = msgspec.convert(decoded, Claims)
    except (jwt.PyJWTError, msgspec.ValidationError) as exc:
        raise InvalidTokenError(f"invalid token: {exc}") from None
    if claims.role not in ROLES:
        raise InvalidTokenError(f"invalid token: unknown role {claims.role!r}")
    return claims
