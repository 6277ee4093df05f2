"""Bearer tokens: signed (HS256), expiring, carrying the user id and role.

A token names the key that signed it in its header (``kid``), so a gateway
holding the current and the previous key (:class:`SigningKeys`) verifies
tokens of either while a key is rotated, and refuses the others: a token
without a kid, or with one it does not hold (a retired key, another
deployment's), is invalid. Where the keys come from is
:mod:`streamcart.workers.users.signing_keys`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt
import msgspec

from streamcart.errors import StreamcartError

ALGORITHM = "HS256"
ROLES = ("user", "admin")
# HS256 is as strong as its key up to the hash's size: shorter keys are refused.
MIN_SECRET_BYTES = 32
_KID_LABEL = b"streamcart token key id"


class InvalidTokenError(StreamcartError):
    """The token is missing, malformed, forged, expired, not yet valid or signed
    with a key this process does not hold."""


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    sub: str  # the user id
    role: str
    iat: int
    nbf: int
    exp: int


class SigningKey:
    """One secret and its key id.

    The kid is derived from the secret (an HMAC of a fixed label), so every
    process holding the same secret names it alike with nothing more to
    configure; it tells nothing a token's own signature does not.
    """

    __slots__ = ("kid", "secret")

    def __init__(self, secret: bytes) -> None:
        """Raises:
        ValueError: ``secret`` is shorter than 32 bytes.
        """
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"a token signing secret needs at least {MIN_SECRET_BYTES} bytes, got {len(secret)}"
            )
        self.secret = secret
        self.kid = hmac.new(secret, _KID_LABEL, hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:  # never the secret, in a log or a traceback
        return f"SigningKey(kid={self.kid!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningKey) and hmac.compare_digest(self.secret, other.secret)

    def __hash__(self) -> int:
        return hash(self.kid)


class SigningKeys:
    """The key that signs (``current``) and the keys that still verify.

    ``previous`` is the key being retired: tokens it signed stay valid until
    they expire, and no new token is signed with it.
    """

    __slots__ = ("_by_kid", "current", "previous")

    def __init__(self, current: SigningKey, previous: SigningKey | None = None) -> None:
        self.current = current
        self.previous = previous
        self._by_kid = {key.kid: key for key in (previous, current) if key is not None}

    def __repr__(self) -> str:
        return f"SigningKeys(current={self.current!r}, previous={self.previous!r})"

    def find(self, kid: str) -> SigningKey | None:
        """The key with this kid, or None."""
        return self._by_kid.get(kid)


def issue(
    key: SigningKey, user_id: str, role: str, *, ttl_s: int = 3600, now: int | None = None
) -> tuple[str, int]:
    """A token for ``user_id`` with ``role``, signed with ``key`` and naming it;
    returns (token, expires_at Unix seconds)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    issued = int(time.time()) if now is None else now
    expires = issued + ttl_s
    claims = {"sub": user_id, "role": role, "iat": issued, "nbf": issued, "exp": expires}
    token = jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})
    return token, expires


def verify(keys: SigningKeys, token: str, *, now: int | None = None) -> Claims:
    """The claims of a valid token.

    The header's ``kid`` picks the key; only HS256 is accepted (``alg: none``
    and every other algorithm are refused), the signature must match, and
    ``exp``/``nbf`` must hold.

    Raises:
        InvalidTokenError: with the reason, for any token that is not valid now.
    """
    key = keys.find(_kid(token))
    if key is None:
        raise InvalidTokenError(
            "invalid token: signed with a key that is not in use (retired, or another "
            "deployment's); log in again"
        )
    required = ["sub", "role", "iat", "nbf", "exp"]
    try:
        if now is None:
            decoded = jwt.decode(
                token, key.secret, algorithms=[ALGORITHM], options={"require": required}
            )
        else:  # tests pin the clock: check exp/nbf ourselves against it
            decoded = jwt.decode(
                token,
                key.secret,
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


def _kid(token: str) -> str:
    """The header's key id.

    Raises:
        InvalidTokenError: the token is malformed or names no key.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"invalid token: {exc}") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidTokenError("invalid token: no key id (kid) in its header; log in again")
    return kid
