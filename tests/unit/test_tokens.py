"""Bearer tokens: what verifies, what is refused, where the secret comes from."""

from __future__ import annotations

import base64
import json
from typing import Any

import fakeredis
import jwt
import pytest

from streamcart.bus.keys import Keys
from streamcart.workers.users import tokens
from streamcart.workers.users.tokens import InvalidTokenError, issue, signing_secret, verify

SECRET = b"s" * 64  # long enough for HS512 too, without a key-length warning
NOW = 1_700_000_000


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "u1", "role": "user", "iat": NOW, "nbf": NOW, "exp": NOW + 60,
    }  # fmt: skip
    claims.update(changes)
    return claims


def test_an_issued_token_verifies_to_its_claims() -> None:
    token, expires_at = issue(SECRET, "u1", "admin", ttl_s=60, now=NOW)
    assert expires_at == NOW + 60
    claims = verify(SECRET, token, now=NOW + 1)
    assert (claims.sub, claims.role, claims.iat, claims.nbf, claims.exp) == (
        "u1", "admin", NOW, NOW, NOW + 60,
    )  # fmt: skip


def test_a_fresh_token_verifies_on_the_real_clock() -> None:
    token, _ = issue(SECRET, "u1", "user")
    assert verify(SECRET, token).sub == "u1"


def test_issue_refuses_an_unknown_role() -> None:
    with pytest.raises(ValueError, match="role must be one of"):
        issue(SECRET, "u1", "root")


def test_an_unsigned_alg_none_token_is_refused() -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(role='admin'))}."
    with pytest.raises(InvalidTokenError, match="invalid token"):
        verify(SECRET, token, now=NOW)


def test_another_algorithm_is_refused() -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    with pytest.raises(InvalidTokenError, match="alg value is not allowed"):
        verify(SECRET, token, now=NOW)


def test_a_token_signed_with_another_key_is_refused() -> None:
    token, _ = issue(b"k" * 64, "u1", "user", now=NOW)
    with pytest.raises(InvalidTokenError, match="Signature verification failed"):
        verify(SECRET, token, now=NOW)


def test_an_altered_payload_is_refused() -> None:
    token, _ = issue(SECRET, "u1", "user", now=NOW)
    header, _, signature = token.split(".")
    forged = f"{header}.{_b64(_claims(role='admin'))}.{signature}"
    with pytest.raises(InvalidTokenError, match="Signature verification failed"):
        verify(SECRET, forged, now=NOW)


def test_an_expired_token_is_refused() -> None:
    token, expires_at = issue(SECRET, "u1", "user", ttl_s=60, now=NOW)
    with pytest.raises(InvalidTokenError, match="expired"):
        verify(SECRET, token, now=expires_at)
    old, _ = issue(SECRET, "u1", "user", ttl_s=60, now=NOW)
    with pytest.raises(InvalidTokenError, match="expired"):
        verify(SECRET, old)  # the real clock is long past NOW


def test_a_token_not_yet_valid_is_refused() -> None:
    token = jwt.encode(_claims(nbf=NOW + 30), SECRET, algorithm="HS256")
    with pytest.raises(InvalidTokenError, match="not yet valid"):
        verify(SECRET, token, now=NOW)
    assert verify(SECRET, token, now=NOW + 30).sub == "u1"


@pytest.mark.parametrize("missing", ["sub", "role", "iat", "nbf", "exp"])
def test_a_token_missing_a_claim_is_refused(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(InvalidTokenError, match=missing):
        verify(SECRET, token, now=NOW)


def test_a_token_with_an_unknown_role_is_refused() -> None:
    token = jwt.encode(_claims(role="root"), SECRET, algorithm="HS256")
    with pytest.raises(InvalidTokenError, match="unknown role 'root'"):
        verify(SECRET, token, now=NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidTokenError):
        verify(SECRET, garbage, now=NOW)


async def test_the_secret_comes_from_the_environment_when_set(
    fake_redis: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tokens.SECRET_ENV, "from-env")
    assert await signing_secret(fake_redis, Keys("t")) == b"from-env"
    assert await fake_redis.keys("*") == []  # nothing generated


async def test_the_secret_is_created_once_in_redis_and_stays(
    fake_redis: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(tokens.SECRET_ENV, raising=False)
    keys = Keys("t")
    first = await signing_secret(fake_redis, keys)
    assert len(first) >= 32
    assert await signing_secret(fake_redis, keys) == first
    assert await fake_redis.get(keys.state("users", "jwt-secret")) == first.decode()
    # Another namespace gets a secret of its own.
    assert await signing_secret(fake_redis, Keys("other")) != first


class _DeletedRightAfterSet:
    """A client whose secret is deleted by someone else right after each SET."""

    def __init__(self, redis: fakeredis.FakeAsyncRedis) -> None:
        self._redis = redis

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    async def set(self, key: str, *args: Any, **kwargs: Any) -> Any:
        reply = await self._redis.set(key, *args, **kwargs)
        await self._redis.delete(key)
        return reply


async def test_a_secret_deleted_while_it_is_read_never_signs_as_none(
    fake_redis: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set-then-get read ``None`` when a delete landed between them, and every
    token was then signed (and forgeable) with the secret b"None"."""
    monkeypatch.delenv(tokens.SECRET_ENV, raising=False)
    secret = await signing_secret(_DeletedRightAfterSet(fake_redis), Keys("t"))  # type: ignore[arg-type]
    assert secret != b"None"
    assert len(secret) >= 48
