"""The users service on fakeredis, driven through a running consumer and RPC."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import fakeredis
import msgspec
import pytest

from streamcart.bus.commit import commit
from streamcart.bus.context import Context
from streamcart.bus.dedup import DedupWindow
from streamcart.bus.envelope import Envelope
from streamcart.bus.options import ServiceOptions
from streamcart.bus.rpc import RpcClient
from streamcart.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    UnavailableError,
    WriteConflictError,
)
from streamcart.workers.users import accounts, signing_keys, tokens
from streamcart.workers.users.service import LoggedIn, Register, Registered, User, build
from tests.unit.support import KEYS, running

FAST = ServiceOptions(block_ms=50, retry_initial_ms=5)
ALICE = {"email": "Alice@Example.com", "password": "correct horse", "name": "Alice"}


@pytest.fixture
async def rpc(fake_redis: fakeredis.FakeAsyncRedis) -> AsyncIterator[RpcClient]:
    """An RPC client to a users service running on the fake."""
    async with running(build(FAST), fake_redis), RpcClient(fake_redis, KEYS) as client:
        yield client


def _credentials(body: dict[str, str]) -> dict[str, str]:
    return {"email": body["email"], "password": body["password"]}


async def _register(rpc: RpcClient, **changes: str) -> str:
    reply: Registered = await rpc.call(
        "users.register", {**ALICE, **changes}, response_type=Registered
    )
    return reply.user_id


async def test_register_login_and_get(rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis) -> None:
    user_id = await _register(rpc)
    login = await rpc.call(
        "users.login",
        {"email": " alice@EXAMPLE.com", "password": "correct horse"},
        response_type=LoggedIn,
    )
    claims = tokens.verify(signing_keys.from_environment(), login.token)
    assert (claims.sub, claims.role, claims.exp) == (user_id, "user", login.expires_at)
    assert login.expires_at - claims.iat == 3600  # UsersSettings.token_ttl_s

    user = await rpc.call("users.get", {"user_id": user_id}, response_type=User)
    assert (user.user_id, user.email, user.name, user.role) == (
        user_id, "alice@example.com", "Alice", "user",
    )  # fmt: skip
    raw = await rpc.call("users.get", {"user_id": user_id})
    assert set(raw) == {"user_id", "email", "name", "role", "created_at"}  # never the hash

    events = await fake_redis.xrange(KEYS.events("user"))
    assert [f["type"] for _, f in events] == ["user.registered"]
    assert msgspec.json.decode(events[0][1]["data"]) == {
        "user_id": user_id, "email": "alice@example.com", "name": "Alice",
    }  # fmt: skip


async def test_an_unknown_user_is_not_found(rpc: RpcClient) -> None:
    with pytest.raises(NotFoundError, match="no user 'nobody'"):
        await rpc.call("users.get", {"user_id": "nobody"})


async def test_the_password_is_stored_only_as_an_argon2_hash(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    user_id = await _register(rpc)
    stored = await fake_redis.hgetall(accounts.user_key(KEYS, user_id))
    assert stored["password_hash"].startswith("$argon2id$")
    assert await fake_redis.get(accounts.email_key(KEYS, "alice@example.com")) == user_id
    for key in await fake_redis.keys("*"):
        if await fake_redis.type(key) == "hash":
            assert "correct horse" not in str(await fake_redis.hgetall(key))
        elif await fake_redis.type(key) == "string":
            assert "correct horse" not in str(await fake_redis.get(key))


async def test_a_taken_email_is_a_conflict(rpc: RpcClient) -> None:
    await _register(rpc)
    with pytest.raises(ConflictError, match="email already registered"):
        await _register(rpc, email="ALICE@example.com ", name="Other")


async def test_concurrent_registrations_of_one_email_make_one_account(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    results = await asyncio.gather(
        *(_register(rpc, password=f"password-{i}") for i in range(2)), return_exceptions=True
    )
    user_ids = [r for r in results if isinstance(r, str)]
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    assert len(user_ids) == 1 and len(conflicts) == 1, results
    assert [key async for key in fake_redis.scan_iter(match="*:user:*")] == [
        accounts.user_key(KEYS, user_ids[0])
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"email": "not-an-email"}, "does not look like an email"),
        ({"email": "a b@example.com"}, "does not look like an email"),
        ({"password": "short"}, "password must be 8 to 128 characters"),
        ({"password": "x" * 129}, "password must be 8 to 128 characters"),
        ({"name": "  "}, "name must be 1 to 100 characters"),
        ({"name": "n" * 101}, "name must be 1 to 100 characters"),
    ],
)
async def test_invalid_fields_are_refused_with_the_reason(
    rpc: RpcClient, changes: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidError, match=message):
        await _register(rpc, **changes)


@pytest.mark.parametrize("extra", [{"role": "admin"}, {"user_id": "chosen"}])
async def test_unknown_fields_are_refused(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis, extra: dict[str, str]
) -> None:
    with pytest.raises(InvalidError, match="unknown field"):
        await rpc.call("users.register", {**ALICE, **extra})
    assert await fake_redis.exists(accounts.email_key(KEYS, "alice@example.com")) == 0


async def test_wrong_password_and_unknown_email_give_the_same_error(rpc: RpcClient) -> None:
    await _register(rpc)
    messages = []
    for email, password in [
        ("alice@example.com", "wrong password"),
        ("bob@example.com", "correct horse"),
        ("not an email", "correct horse"),
    ]:
        with pytest.raises(ForbiddenError) as caught:
            await rpc.call("users.login", {"email": email, "password": password})
        messages.append(str(caught.value))
    assert messages == ["wrong email or password"] * 3


async def test_the_token_lifetime_follows_the_settings(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    async with running(build(FAST), fake_redis) as consumer, RpcClient(fake_redis, KEYS) as rpc:
        consumer.apply_settings(msgspec.structs.replace(consumer.settings, token_ttl_s=60))
        await _register(rpc)
        login = await rpc.call("users.login", _credentials(ALICE), response_type=LoggedIn)
        claims = tokens.verify(signing_keys.from_environment(), login.token)
        assert claims.exp - claims.iat == 60


async def test_create_account_shares_the_rules_and_the_uniqueness(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    user_id = await accounts.create_account(
        fake_redis, KEYS, "Admin@Example.com", "admin password", "Admin", "admin"
    )
    login = await rpc.call(
        "users.login",
        {"email": "admin@example.com", "password": "admin password"},
        response_type=LoggedIn,
    )
    claims = tokens.verify(signing_keys.from_environment(), login.token)
    assert (claims.sub, claims.role) == (user_id, "admin")
    with pytest.raises(ConflictError, match="email already registered"):
        await _register(rpc, email="admin@example.com")
    with pytest.raises(ConflictError, match="email already registered"):
        await accounts.create_account(fake_redis, KEYS, "admin@example.com", "x" * 8, "A", "user")
    with pytest.raises(InvalidError, match="password must be"):
        await accounts.create_account(fake_redis, KEYS, "new@example.com", "short", "N", "user")
    with pytest.raises(InvalidError, match="role must be one of"):
        await accounts.create_account(fake_redis, KEYS, "new@example.com", "x" * 8, "N", "root")
    events = await fake_redis.xrange(KEYS.events("user"))
    assert [msgspec.json.decode(f["data"])["user_id"] for _, f in events] == [user_id]


async def test_concurrent_create_account_and_register_make_one_account(
    rpc: RpcClient, fake_redis: fakeredis.FakeAsyncRedis
) -> None:
    results = await asyncio.gather(
        accounts.create_account(fake_redis, KEYS, ALICE["email"], "password-1", "A", "user"),
        _register(rpc),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "str"], results


async def test_a_registration_that_loses_the_race_fails_its_commit(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    """The email is taken between the handler's check and its commit: WATCH
    refuses the commit (and the retry then answers a conflict)."""
    service = build(FAST)
    handler = service.handler_for("users.register")
    assert handler is not None
    envelope = Envelope(
        type="users.register", data="{}", id="m1", stream=KEYS.inbox("users"), entry_id="1-0"
    )
    ctx = Context(service, envelope, fake_redis, KEYS, logging.getLogger("test"))
    await handler.func(Register(**ALICE), ctx)
    await fake_redis.set(accounts.email_key(KEYS, "alice@example.com"), "someone-else")
    with pytest.raises(WriteConflictError):
        await commit(ctx, DedupWindow(fake_redis, KEYS, "users"), window_s=60)
    assert await fake_redis.get(accounts.email_key(KEYS, "alice@example.com")) == "someone-else"
    assert [key async for key in fake_redis.scan_iter(match="*:user:*")] == []


async def test_tokens_are_signed_with_the_current_key_and_name_it(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    old, new = tokens.SigningKey(b"o" * 40), tokens.SigningKey(b"n" * 40)
    rotated = tokens.SigningKeys(current=new, previous=old)
    async with running(build(FAST, keys=rotated), fake_redis), RpcClient(fake_redis, KEYS) as rpc:
        await _register(rpc)
        login = await rpc.call("users.login", _credentials(ALICE), response_type=LoggedIn)
    assert tokens.verify(tokens.SigningKeys(new), login.token).role == "user"
    with pytest.raises(tokens.InvalidTokenError):  # never the previous key
        tokens.verify(tokens.SigningKeys(old), login.token)


async def test_without_a_signing_key_no_token_is_issued(
    fake_redis: fakeredis.FakeAsyncRedis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller learns that the service failed; the operator's log says why."""
    monkeypatch.delenv(signing_keys.SECRET_ENV)
    one_try = ServiceOptions(block_ms=50, max_attempts=1, inline_attempts=1)
    async with running(build(one_try), fake_redis), RpcClient(fake_redis, KEYS) as rpc:
        await _register(rpc)
        with pytest.raises(UnavailableError, match="internal error in the users service"):
            await rpc.call("users.login", _credentials(ALICE), timeout=5)
    assert "no token signing secret: set STREAMCART_TOKEN_SECRET" in caplog.text
    assert await fake_redis.keys("*jwt-secret*") == []  # none made up in Redis either
