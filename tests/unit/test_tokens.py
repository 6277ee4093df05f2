"""Bearer tokens: what verifies, what is refused, and which key verifies which."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from streamcart.workers.users.tokens import (
    InvalidTokenError,
    SigningKey,
    SigningKeys,
    issue,
    verify,
)

SECRET = b"s" * 64  # long enough for HS512 too, without a key-length warning
KEY = SigningKey(SECRET)
KEYS = SigningKeys(KEY)
NOW = 1_700_000_000


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(claims: dict[str, object], secret: bytes = SECRET, **header: object) -> str:
    """A token signed by hand, naming KEY unless ``header`` says otherwise."""
    algorithm = str(header.pop("alg", "HS256"))
    return jwt.encode(claims, secret, algorithm=algorithm, headers={"kid": KEY.kid, **header})


def _claims(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "u1", "role": "user", "iat": NOW, "nbf": NOW, "exp": NOW + 60,
    }  # fmt: skip
    claims.update(changes)
    return claims


def test_an_issued_token_verifies_to_its_claims() -> None:
    token, expires_at = issue(KEY, "u1", "admin", ttl_s=60, now=NOW)
    assert expires_at == NOW + 60
    claims = verify(KEYS, token, now=NOW + 1)
    assert (claims.sub, claims.role, claims.iat, claims.nbf, claims.exp) == (
        "u1", "admin", NOW, NOW, NOW + 60,
    )  # fmt: skip


def test_a_fresh_token_verifies_on_the_real_clock() -> None:
    token, _ = issue(KEY, "u1", "user")
    assert verify(KEYS, token).sub == "u1"


def test_issue_refuses_an_unknown_role() -> None:
    with pytest.raises(ValueError, match="role must be one of"):
        issue(KEY, "u1", "root")


def test_an_unsigned_alg_none_token_is_refused() -> None:
    header = {"alg": "none", "typ": "JWT", "kid": KEY.kid}
    token = f"{_b64(header)}.{_b64(_claims(role='admin'))}."
    with pytest.raises(InvalidTokenError, match="invalid token"):
        verify(KEYS, token, now=NOW)


def test_another_algorithm_is_refused() -> None:
    token = _signed(_claims(), alg="HS512")
    with pytest.raises(InvalidTokenError, match="alg value is not allowed"):
        verify(KEYS, token, now=NOW)


def test_a_token_signed_with_another_key_is_refused() -> None:
    token = _signed(_claims(), b"k" * 64)  # naming our key, signed with another
    with pytest.raises(InvalidTokenError, match="Signature verification failed"):
        verify(KEYS, token, now=NOW)


def test_an_altered_payload_is_refused() -> None:
    token, _ = issue(KEY, "u1", "user", now=NOW)
    header, _, signature = token.split(".")
    forged = f"{header}.{_b64(_claims(role='admin'))}.{signature}"
    with pytest.raises(InvalidTokenError, match="Signature verification failed"):
        verify(KEYS, forged, now=NOW)


def test_an_expired_token_is_refused() -> None:
    token, expires_at = issue(KEY, "u1", "user", ttl_s=60, now=NOW)
    with pytest.raises(InvalidTokenError, match="expired"):
        verify(KEYS, token, now=expires_at)
    old, _ = issue(KEY, "u1", "user", ttl_s=60, now=NOW)
    with pytest.raises(InvalidTokenError, match="expired"):
        verify(KEYS, old)  # the real clock is long past NOW


def test_a_token_not_yet_valid_is_refused() -> None:
    token = _signed(_claims(nbf=NOW + 30))
    with pytest.raises(InvalidTokenError, match="not yet valid"):
        verify(KEYS, token, now=NOW)
    assert verify(KEYS, token, now=NOW + 30).sub == "u1"


@pytest.mark.parametrize("missing", ["sub", "role", "iat", "nbf", "exp"])
def test_a_token_missing_a_claim_is_refused(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    token = _signed(claims)
    with pytest.raises(InvalidTokenError, match=missing):
        verify(KEYS, token, now=NOW)


def test_a_token_with_an_unknown_role_is_refused() -> None:
    token = _signed(_claims(role="root"))
    with pytest.raises(InvalidTokenError, match="unknown role 'root'"):
        verify(KEYS, token, now=NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        verify(KEYS, garbage, now=NOW)


def test_a_token_names_the_key_that_signed_it() -> None:
    token, _ = issue(KEY, "u1", "user", now=NOW)
    assert jwt.get_unverified_header(token)["kid"] == KEY.kid
    assert KEY.kid == SigningKey(SECRET).kid  # derived: every process names it alike
    assert KEY.kid != SigningKey(b"k" * 64).kid


ROTATED = SigningKey(b"r" * 64)


def test_after_a_rotation_tokens_of_the_previous_key_still_verify() -> None:
    rotated = SigningKeys(current=ROTATED, previous=KEY)
    before, _ = issue(KEY, "u1", "user", now=NOW)
    after, _ = issue(rotated.current, "u2", "user", now=NOW)
    assert verify(rotated, before, now=NOW).sub == "u1"
    assert verify(rotated, after, now=NOW).sub == "u2"


def test_a_token_of_a_retired_key_is_refused() -> None:
    retired = SigningKeys(current=SigningKey(b"n" * 64), previous=ROTATED)
    token, _ = issue(KEY, "u1", "user", now=NOW)
    with pytest.raises(InvalidTokenError, match="a key that is not in use"):
        verify(retired, token, now=NOW)


@pytest.mark.parametrize("kid", [None, "", "0123456789abcdef"])
def test_a_token_without_a_kid_or_with_an_unknown_one_is_refused(kid: object) -> None:
    header = {} if kid is None else {"kid": kid}
    token = jwt.encode(_claims(), SECRET, algorithm="HS256", headers=header)
    with pytest.raises(InvalidTokenError, match=r"kid|not in use"):
        verify(KEYS, token, now=NOW)


def test_a_secret_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SigningKey(b"x" * 31)


def test_keys_never_show_their_secret() -> None:
    shown = repr(SigningKeys(KEY, ROTATED))
    assert KEY.kid in shown and ROTATED.kid in shown
    assert "sss" not in shown and "rrr" not in shown
