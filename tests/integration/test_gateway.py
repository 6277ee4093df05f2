"""The gateway over HTTP against a real server, with a stand-in users service.

The stand-in answers ``users.register``, ``users.login`` and ``users.get``
like the real service (a real signed token included), so these tests pin the
gateway's contract (contract section 5) and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from redis.asyncio import Redis

from streamcart import __version__
from streamcart.bus.consumer import Consumer
from streamcart.bus.context import Context
from streamcart.bus.keys import Keys
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.config.store import ConfigStore
from streamcart.errors import ConflictError, ForbiddenError, NotFoundError
from streamcart.gateway import create_app
from streamcart.registry.instances import Instance, Registry
from streamcart.resilience.ratelimit import RateLimit
from streamcart.workers.users import signing_keys, tokens
from tests.integration.support import Workers, cli, free_port, running, wait_for

FAST = ServiceOptions(block_ms=100, max_attempts=1, inline_attempts=1)
HEARTBEAT_S = 0.5
ALICE = {"email": "alice@example.com", "password": "s3cret-pass", "name": "Alice"}
Client = httpx.AsyncClient


class Register(msgspec.Struct, frozen=True):
    email: str
    password: str
    name: str


class Login(msgspec.Struct, frozen=True):
    email: str
    password: str


class Get(msgspec.Struct, frozen=True):
    user_id: str


def fake_users(keys: Keys) -> Service:
    """Accounts in a dict; tokens signed with the configured key."""
    service = Service("users", options=FAST)
    accounts: dict[str, dict[str, str]] = {}

    @service.on("users.register")
    async def register(msg: Register, ctx: Context) -> dict[str, str]:
        if msg.email in accounts:
            raise ConflictError(f"{msg.email} is already registered")
        user_id = uuid.uuid4().hex
        accounts[msg.email] = {"user_id": user_id, "password": msg.password, "name": msg.name}
        return {"user_id": user_id}

    @service.on("users.login")
    async def login(msg: Login, ctx: Context) -> dict[str, object]:
        account = accounts.get(msg.email)
        if account is None or account["password"] != msg.password:
            raise ForbiddenError("wrong email or password")
        key = signing_keys.from_environment().current
        token, expires_at = tokens.issue(key, account["user_id"], "user")
        return {"token": token, "expires_at": expires_at}

    @service.on("users.get")
    async def get(msg: Get, ctx: Context) -> dict[str, object]:
        for email, account in accounts.items():
            if account["user_id"] == msg.user_id:
                return {"user_id": msg.user_id, "email": email, "name": account["name"],
                        "role": "user", "created_at": 0}  # fmt: skip
        raise NotFoundError(f"no user {msg.user_id!r}")

    return service


@contextlib.asynccontextmanager
async def alive(redis: Redis, keys: Keys, service: str = "users") -> AsyncIterator[None]:
    """Keep one instance of ``service`` registered as alive, as a worker's heartbeat would."""
    registry = Registry(redis, keys)
    instance = Instance(
        service=service, instance_id=f"test.{uuid.uuid4().hex[:6]}", consumer="test",
        host="localhost", pid=0, version=__version__, started_at=0, concurrency=1, streams=[],
    )  # fmt: skip

    stop = asyncio.Event()

    async def beat() -> None:
        # Stopped by an event, not a cancel: redis-py on Python 3.11 can swallow one.
        while not stop.is_set():
            await registry.heartbeat(instance)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_S)

    await registry.heartbeat(instance)
    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        stop.set()
        await task
        await registry.deregister(service, instance.instance_id)


@contextlib.asynccontextmanager
async def gateway(
    redis: Redis, keys: Keys, *, peer: str = "127.0.0.1", **options: Any
) -> AsyncIterator[Client]:
    """The app with its lifespan, served in this event loop (the Redis client's
    loop), to connections from ``peer``."""
    app = create_app(redis, keys, **options)
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    async with app.lifespan(), Client(transport=transport, base_url="http://gateway") as client:
        yield client


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


@contextlib.asynccontextmanager
async def with_users(redis: Redis, keys: Keys, **options: Any) -> AsyncIterator[Client]:
    """A gateway (with ``options``) and a running stand-in users service.

    A context manager entered in the test itself, not a fixture: the app's
    lifespan must end in the task that started it.
    """
    consumer = Consumer(fake_users(keys), redis, name="u1", keys=keys, concurrency=8)
    async with running(consumer), alive(redis, keys), gateway(redis, keys, **options) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert len(response.headers["x-trace-id"]) == 32
    error: dict[str, str] = body["error"]
    return error


async def token_of(client: Client) -> str:
    assert (await client.post("/api/users/register", json=ALICE)).status_code == 201
    login = {"email": ALICE["email"], "password": ALICE["password"]}
    response = await client.post("/api/users/login", json=login)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- users ------------------------------------------------------------------------
async def test_register_login_and_me(real_redis: Redis, keys: Keys) -> None:
    async with with_users(real_redis, keys) as client:
        registered = await client.post("/api/users/register", json=ALICE)
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["user_id"]
        assert len(registered.headers["x-trace-id"]) == 32

        again = await client.post("/api/users/register", json=ALICE)
        assert_error(again, 409, "conflict")

        login = await client.post(
            "/api/users/login", json={"email": ALICE["email"], "password": ALICE["password"]}
        )
        assert login.status_code == 200, login.text
        assert login.json()["expires_at"] > time.time()

        me = await client.get(
            "/api/me", headers={"Authorization": f"Bearer {login.json()['token']}"}
        )
        assert me.status_code == 200, me.text
        assert me.json() == {"user_id": user_id, "email": ALICE["email"], "name": "Alice",
                             "role": "user", "created_at": 0}  # fmt: skip


async def test_another_users_account_looks_like_a_missing_one(
    real_redis: Redis, keys: Keys
) -> None:
    bob = {"email": "bob@example.com", "password": "hunter2-pass", "name": "Bob"}
    async with with_users(real_redis, keys) as client:
        bob_id = (await client.post("/api/users/register", json=bob)).json()["user_id"]
        alice = {"Authorization": f"Bearer {await token_of(client)}"}
        key = signing_keys.from_environment().current
        admin = {"Authorization": f"Bearer {tokens.issue(key, 'root', 'admin')[0]}"}
        unknown_id = uuid.uuid4().hex

        someone_elses = await client.get(f"/api/users/{bob_id}", headers=alice)
        missing = await client.get(f"/api/users/{unknown_id}", headers=alice)
        missing_for_admin = await client.get(f"/api/users/{unknown_id}", headers=admin)

        for response in (someone_elses, missing, missing_for_admin):
            assert_error(response, 404, "not_found")
        assert someone_elses.json() == json.loads(missing.text.replace(unknown_id, bob_id))
        assert missing.json() == missing_for_admin.json()
        assert set(someone_elses.headers) == set(missing.headers)
        as_admin = await client.get(f"/api/users/{bob_id}", headers=admin)
        assert as_admin.status_code == 200 and as_admin.json()["email"] == bob["email"]


async def test_wrong_password_is_a_403_from_the_service(real_redis: Redis, keys: Keys) -> None:
    async with with_users(real_redis, keys) as client:
        await client.post("/api/users/register", json=ALICE)
        response = await client.post(
            "/api/users/login", json={"email": ALICE["email"], "password": "nope"}
        )
        assert_error(response, 403, "forbidden")


async def test_me_for_a_user_the_service_does_not_know_is_404(
    real_redis: Redis, keys: Keys
) -> None:
    async with with_users(real_redis, keys) as client:
        key = signing_keys.from_environment().current
        token, _ = tokens.issue(key, "ghost", "user")
        response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 404, "not_found")


# -- auth -------------------------------------------------------------------------
async def test_a_rotation_keeps_the_previous_keys_tokens_until_it_is_retired(
    real_redis: Redis, keys: Keys
) -> None:
    """The stand-in signs with the configured key; the gateway is restarted
    with it as the previous key (rotated), then with neither (retired)."""
    configured = signing_keys.from_environment().current
    new, newer = tokens.SigningKey(b"n" * 40), tokens.SigningKey(b"m" * 40)
    consumer = Consumer(fake_users(keys), real_redis, name="u1", keys=keys, concurrency=8)
    async with running(consumer), alive(real_redis, keys):
        async with gateway(real_redis, keys) as client:
            old_token = await token_of(client)
        user_id = tokens.verify(tokens.SigningKeys(configured), old_token).sub
        new_token, _ = tokens.issue(new, user_id, "user")
        rotated = tokens.SigningKeys(current=new, previous=configured)
        async with gateway(real_redis, keys, signing_keys=rotated) as client:
            for token in (old_token, new_token):
                me = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
                assert me.status_code == 200, me.text
        retired = tokens.SigningKeys(current=newer, previous=new)
        async with gateway(real_redis, keys, signing_keys=retired) as client:
            me = await client.get("/api/me", headers={"Authorization": f"Bearer {old_token}"})
            error = assert_error(me, 401, "unauthorized")
            assert "not in use" in error["message"]
            me = await client.get("/api/me", headers={"Authorization": f"Bearer {new_token}"})
            assert me.status_code == 200, me.text


# Routes anyone may call; every other /api route must demand a token.
PUBLIC_API = {
    ("POST", "/api/users/register"),
    ("POST", "/api/users/login"),
    ("GET", "/api/products"),
    ("GET", "/api/products/{sku}"),
}
ROOMY = RateLimit(rate=1000, burst=1000)  # this test's hundreds of requests are not the point


def bad_tokens(key: tokens.SigningKey) -> dict[str, dict[str, str]]:
    """Every way an Authorization header can fail, by name."""
    now = int(time.time())
    expired, _ = tokens.issue(key, "u1", "user", ttl_s=60, now=now - 3600)
    not_yet_valid, _ = tokens.issue(key, "u1", "user", ttl_s=3600, now=now + 600)
    wrong_key, _ = tokens.issue(tokens.SigningKey(b"not-the-secret-" * 4), "u1", "admin")
    header, payload, signature = tokens.issue(key, "u1", "user")[0].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    altered = f"{header}.{_b64({**claims, 'role': 'admin'})}.{signature}"
    unsigned = {"sub": "u1", "role": "admin", "iat": now, "nbf": now, "exp": now + 600}
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': key.kid})}.{_b64(unsigned)}."
    # The right kid on a token signed with another secret.
    forged_kid = jwt.encode(unsigned, b"f" * 64, algorithm="HS256", headers={"kid": key.kid})
    no_kid = jwt.encode(unsigned, key.secret, algorithm="HS256")
    bearer = {
        "malformed": "not.a.token",
        "alg none": alg_none,
        "wrong key": wrong_key,
        "forged with the right kid": forged_kid,
        "no kid": no_kid,
        "altered payload": altered,
        "expired": expired,
        "not yet valid": not_yet_valid,
    }
    return {
        "no header": {},
        "wrong scheme": {"Authorization": f"Basic {base64.b64encode(b'a:b').decode()}"},
        "scheme only": {"Authorization": "Bearer"},
        **{case: {"Authorization": f"Bearer {token}"} for case, token in bearer.items()},
    }


async def test_every_route_that_needs_a_token_refuses_every_bad_one(
    real_redis: Redis, keys: Keys
) -> None:
    """Walks the OpenAPI document, so a route added later is covered too: a
    bad token is 401 before the body is even read, a user's token on a route
    whose security names the admin role is 403, and no /api route is public
    by accident."""
    key = signing_keys.from_environment().current
    cases = bad_tokens(key)
    user = {"Authorization": f"Bearer {tokens.issue(key, 'u1', 'user')[0]}"}
    async with gateway(real_redis, keys, limit=ROOMY) as client:
        document = (await client.get("/schema/openapi.json")).json()
        operations = [
            (method.upper(), path, operation)
            for path, item in document["paths"].items()
            for method, operation in item.items()
        ]
        secured = [(method, path, op) for method, path, op in operations if op.get("security")]
        open_api_routes = {
            (method, path)
            for method, path, op in operations
            if path.startswith("/api/") and not op.get("security")
        }
        assert open_api_routes <= PUBLIC_API
        assert {("GET", "/api/me"), ("GET", "/api/admin/status")} <= {
            (method, path) for method, path, _ in secured
        }
        for method, path, operation in secured:
            url = re.sub(r"\{[^}]+\}", "x", path)
            body = {} if method in {"POST", "PUT", "PATCH"} else None
            for case, headers in cases.items():
                response = await client.request(method, url, headers=headers, json=body)
                where = f"{method} {path} with {case}"
                assert response.status_code == 401, f"{where}: {response.text}"
                assert_error(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer", where
            roles = {role for requirement in operation["security"] for role in
                     next(iter(requirement.values()))}  # fmt: skip
            if "admin" in roles:
                response = await client.request(method, url, headers=user, json=body)
                assert_error(response, 403, "forbidden")


# -- bodies -----------------------------------------------------------------------
async def test_bad_bodies_are_4xx_with_a_message(real_redis: Redis, keys: Keys) -> None:
    async with with_users(real_redis, keys) as client:
        login = {"email": ALICE["email"], "password": ALICE["password"]}
        for field, value in {"role": "admin", "user_id": "u1", "price": 1, "status": "X"}.items():
            for path, body in (("register", ALICE), ("login", login)):
                unknown = await client.post(f"/api/users/{path}", json={**body, field: value})
                assert field in assert_error(unknown, 400, "bad_request")["message"]

        missing = await client.post("/api/users/register", json={"email": "a@b.c"})
        assert_error(missing, 400, "bad_request")

        not_json = await client.post(
            "/api/users/register", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert_error(not_json, 400, "bad_request")

        deep = "[" * 100_000 + "]" * 100_000
        for body in (
            f'{{"email": {deep}, "password": "p", "name": "n"}}',
            f'{{"email": "a", "password": "p", "name": "n", "extra": {deep}}}',
            '{"email": ' + "9" * 50_000 + ', "password": "p", "name": "n"}',
            '{"email": 1e999999, "password": "p", "name": "n"}',
        ):
            response = await client.post(
                "/api/users/register", content=body, headers={"Content-Type": "application/json"}
            )
            assert 400 <= response.status_code < 500, response.text
            assert set(response.json()) == {"error"}


async def test_a_body_over_the_limit_is_413_before_decoding(real_redis: Redis, keys: Keys) -> None:
    async with with_users(real_redis, keys) as client:
        big = b'{"email": "' + b"a" * 2_000_000 + b'", "password": "p", "name": "n"}'
        response = await client.post(
            "/api/users/register", content=big, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "payload_too_large")

        async def chunks() -> AsyncIterator[bytes]:
            # No Content-Length: the cap must hold while the body streams in.
            for _ in range(40):
                yield b" " * 64_000

        streamed = await client.post(
            "/api/users/register", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_error(streamed, 413, "payload_too_large")


# -- availability -------------------------------------------------------------------
async def test_no_live_users_instance_is_503_at_once(real_redis: Redis, keys: Keys) -> None:
    async with gateway(real_redis, keys) as client:
        started = time.monotonic()
        response = await client.post("/api/users/register", json=ALICE)
        assert_error(response, 503, "unavailable")
        assert time.monotonic() - started < 1.0  # not an RPC timeout
        ready = await client.get("/readyz")
        assert "users" in assert_error(ready, 503, "unavailable")["message"]
        assert (await client.get("/healthz")).status_code == 200


async def test_a_service_that_does_not_answer_is_504(real_redis: Redis, keys: Keys) -> None:
    # Registered as alive, but nothing consumes its inbox.
    async with alive(real_redis, keys), gateway(real_redis, keys, rpc_timeout_s=0.2) as client:
        response = await client.post("/api/users/register", json=ALICE)
        assert_error(response, 504, "timeout")


async def test_a_request_has_one_deadline_that_its_calls_carry(
    real_redis: Redis, keys: Keys
) -> None:
    """The request's deadline, shorter than a call's own timeout, ends it with a
    504; the request it sent carries that deadline, so a late worker drops it."""
    async with (
        alive(real_redis, keys),
        gateway(real_redis, keys, rpc_timeout_s=5.0, request_timeout_s=0.5) as client,
    ):
        started_ms = time.time() * 1000
        response = await client.post("/api/users/register", json=ALICE)
        assert_error(response, 504, "timeout")
        assert time.time() * 1000 - started_ms < 2_000
    [(_, request)] = await real_redis.xrange(keys.inbox("users"))
    # The request's 0.5 s, not the call's own 5 s.
    assert started_ms + 499 <= int(request["deadline_ms"]) < started_ms + 1_500


# -- rate limits ----------------------------------------------------------------------
async def test_requests_past_the_burst_are_429_with_retry_after(
    real_redis: Redis, keys: Keys
) -> None:
    limit = RateLimit(rate=0.5, burst=3)
    async with gateway(real_redis, keys, limit=limit) as client:
        statuses = [(await client.get("/api/me")).status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        refused = await client.get("/api/me")
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 2
        # Probes are never limited.
        assert (await client.get("/healthz")).status_code == 200


async def test_limits_follow_the_config_store_without_a_restart(
    real_redis: Redis, keys: Keys
) -> None:
    store = ConfigStore(real_redis, keys)
    await store.set("gateway", "burst", 2)
    await store.set("gateway", "rate", 0.5)
    async with gateway(real_redis, keys) as client:  # no fixed limit: the live one
        statuses = [(await client.get("/api/me")).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        await store.set("gateway", "burst", 100)
        await store.set("gateway", "rate", 100)

        async def raised() -> bool:  # the settings are re-checked every half second
            return (await client.get("/api/me")).status_code == 401

        await wait_for(raised, within=10, what="the raised limit in force")
        statuses = [(await client.get("/api/me")).status_code for _ in range(5)]
        assert statuses == [401] * 5


PROXY = "10.1.2.3"  # the ingress, as the gateway sees it


def behind(*hops: str) -> dict[str, str]:
    return {"X-Forwarded-For": ", ".join(hops)}


async def test_clients_behind_a_trusted_proxy_have_buckets_of_their_own(
    real_redis: Redis, keys: Keys
) -> None:
    await ConfigStore(real_redis, keys).set("gateway", "trusted_proxies", ["10.0.0.0/8"])
    limit = RateLimit(rate=0.01, burst=2)
    async with gateway(real_redis, keys, peer=PROXY, limit=limit) as client:
        first = [(await client.get("/api/me", headers=behind("203.0.113.1"))).status_code
                 for _ in range(3)]  # fmt: skip
        assert first == [401, 401, 429]
        # Another client through the same proxy; a forged hop left of the one
        # the proxy appended changes nothing.
        second = await client.get("/api/me", headers=behind("203.0.113.2"))
        assert second.status_code == 401, second.text
        forged = await client.get("/api/me", headers=behind("198.51.100.9", "203.0.113.1"))
        assert_error(forged, 429, "rate_limited")


async def test_the_forwarded_for_of_an_untrusted_peer_is_ignored(
    real_redis: Redis, keys: Keys
) -> None:
    limit = RateLimit(rate=0.01, burst=2)
    async with gateway(real_redis, keys, peer="198.51.100.7", limit=limit) as client:
        statuses = [
            (await client.get("/api/me", headers=behind(f"203.0.113.{n}"))).status_code
            for n in range(3)
        ]
        assert statuses == [401, 401, 429]  # one bucket: the peer's


async def test_the_served_gateway_believes_no_proxy_it_is_not_told_to(
    redis_url: str, real_redis: Redis, keys: Keys, tmp_path: Path
) -> None:
    """The server itself honours no X-Forwarded-For (uvicorn trusted 127.0.0.1
    whatever the config said): with no trusted proxy, local clients share one bucket."""
    store = ConfigStore(real_redis, keys)
    await store.set("gateway", "trusted_proxies", [])
    await store.set("gateway", "burst", 2)
    await store.set("gateway", "rate", 0.01)
    port = free_port()
    with Workers(redis_url, keys.namespace, tmp_path) as processes:
        argv = cli(redis_url, keys.namespace, "gateway", "--port", str(port))
        processes.start_command(argv, "gateway")
        async with Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            async def serving() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(serving, within=30, what="the gateway", context=processes.tails)
            statuses = [
                (await client.get("/api/me", headers=behind(f"203.0.113.{n}"))).status_code
                for n in range(3)
            ]
    assert statuses == [401, 401, 429]


async def test_a_login_flood_on_one_account_is_429_while_others_log_in(
    real_redis: Redis, keys: Keys
) -> None:
    store = ConfigStore(real_redis, keys)
    await store.set("gateway", "login_account_burst", 3)
    await store.set("gateway", "login_account_rate", 0.01)
    bob = {"email": "bob@example.com", "password": "hunter2-pass", "name": "Bob"}
    async with with_users(real_redis, keys, limit=ROOMY) as client:
        for body in (ALICE, bob):
            assert (await client.post("/api/users/register", json=body)).status_code == 201
        wrong = {"email": ALICE["email"], "password": "guess-0000"}
        statuses = [(await client.post("/api/users/login", json=wrong)).status_code
                    for _ in range(3)]  # fmt: skip
        assert statuses == [403, 403, 403]
        # The same account however its email is spelt, even with the right password.
        right = {"email": " ALICE@example.COM ", "password": ALICE["password"]}
        refused = await client.post("/api/users/login", json=right)
        assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 100
        login = await client.post(
            "/api/users/login", json={"email": bob["email"], "password": bob["password"]}
        )
        assert login.status_code == 200, login.text


async def test_logins_are_limited_per_client_address(real_redis: Redis, keys: Keys) -> None:
    store = ConfigStore(real_redis, keys)
    await store.set("gateway", "trusted_proxies", ["10.0.0.0/8"])
    await store.set("gateway", "login_address_burst", 2)
    await store.set("gateway", "login_address_rate", 0.01)
    async with with_users(real_redis, keys, peer=PROXY, limit=ROOMY) as client:
        await client.post("/api/users/register", json=ALICE)
        guesser = behind("203.0.113.66")
        statuses = [
            (await client.post("/api/users/login", headers=guesser,
                               json={"email": f"user{n}@example.com", "password": "x" * 8})
             ).status_code
            for n in range(3)
        ]  # fmt: skip
        assert statuses == [403, 403, 429]
        login = {"email": ALICE["email"], "password": ALICE["password"]}
        response = await client.post("/api/users/login", json=login, headers=behind("203.0.113.7"))
        assert response.status_code == 200, response.text


# -- probes, metrics, schema ------------------------------------------------------------
async def test_probes_metrics_and_schema(real_redis: Redis, keys: Keys) -> None:
    async with with_users(real_redis, keys) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert len(health.headers["x-trace-id"]) == 32
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text

        await client.post("/api/users/register", json=ALICE)
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert (
            'streamcart_gateway_requests_total{method="POST",route="/api/users/register",'
            'status="201"} 1.0' in metrics.text
        )
        assert "streamcart_gateway_request_seconds_bucket" in metrics.text

        schema = await client.get("/schema/openapi.json")
        assert schema.status_code == 200
        paths = schema.json()["paths"]
        for path in ("/api/users/register", "/api/users/login", "/api/me", "/healthz", "/readyz"):
            assert path in paths


async def test_unknown_paths_and_methods_get_the_error_body_and_a_trace_id(
    real_redis: Redis,
    keys: Keys,
) -> None:
    async with with_users(real_redis, keys) as client:
        assert_error(await client.get("/nope"), 404, "not_found")
        assert_error(await client.get("/api/users/register"), 405, "method_not_allowed")
        ids = {(await client.get("/healthz")).headers["x-trace-id"] for _ in range(3)}
        assert len(ids) == 3


async def test_admin_status_needs_the_admin_role(real_redis: Redis, keys: Keys) -> None:
    from streamcart.workers.users.tokens import issue

    key = signing_keys.from_environment().current
    user, _ = issue(key, "u-1", "user")
    admin, _ = issue(key, "u-2", "admin")
    async with gateway(real_redis, keys) as client:
        assert_error(await client.get("/api/admin/status"), 401, "unauthorized")
        refused = await client.get("/api/admin/status", headers={"Authorization": f"Bearer {user}"})
        assert_error(refused, 403, "forbidden")
        allowed = await client.get(
            "/api/admin/status", headers={"Authorization": f"Bearer {admin}"}
        )
        assert allowed.status_code == 200
        assert set(allowed.json()) >= {"at_ms", "services", "breakers"}
