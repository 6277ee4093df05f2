"""The users service on a real server: a worker process, RPC, and the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result
from redis.asyncio import Redis

from streamcart.bus.connection import connect
from streamcart.bus.consumer import Consumer
from streamcart.bus.keys import Keys
from streamcart.bus.rpc import RpcClient
from streamcart.cli import main
from streamcart.errors import ConflictError, ForbiddenError
from streamcart.workers.users import signing_keys, tokens
from streamcart.workers.users.accounts import email_key
from streamcart.workers.users.service import LoggedIn, Registered, build
from tests.integration.support import Workers, running

PASSWORD = "correct horse battery"


def _users(redis_url: str, namespace: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        main, ["--redis-url", redis_url, "--namespace", namespace, "users", *args], input=stdin
    )


async def test_a_worker_registers_and_logs_in_over_rpc(
    real_redis: Redis, redis_url: str, namespace: str, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    with Workers(redis_url, namespace, tmp_path) as workers:
        worker = workers.start("users")
        await worker.consumer_name()
        async with RpcClient(real_redis, keys) as rpc:
            body = {"email": "Carol@Example.com", "password": PASSWORD, "name": "Carol"}
            results = await asyncio.gather(
                rpc.call("users.register", body, timeout=20, response_type=Registered),
                rpc.call("users.register", body, timeout=20, response_type=Registered),
                return_exceptions=True,
            )
            created = [r for r in results if isinstance(r, Registered)]
            conflicts = [r for r in results if isinstance(r, ConflictError)]
            assert (len(created), len(conflicts)) == (1, 1), (results, workers.tails())

            login = await rpc.call(
                "users.login",
                {"email": "carol@example.com", "password": PASSWORD},
                timeout=20,
                response_type=LoggedIn,
            )
            claims = tokens.verify(signing_keys.from_environment(), login.token)
            assert (claims.sub, claims.role) == (created[0].user_id, "user")
            with pytest.raises(ForbiddenError, match=r"^wrong email or password$"):
                await rpc.call(
                    "users.login", {"email": "carol@example.com", "password": "nope-nope"}
                )


def test_the_cli_creates_an_admin_who_can_log_in(
    sync_redis: redis.Redis, redis_url: str, namespace: str
) -> None:
    result = _users(redis_url, namespace, "create", "Admin@Example.com", "--admin",
                    "--password", PASSWORD)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "created admin admin@example.com" in result.output
    assert sync_redis.get(email_key(Keys(namespace), "admin@example.com"))

    async def login() -> tokens.Claims:
        client = connect(redis_url)
        keys = Keys(namespace)
        try:
            consumer = Consumer(build(), client, name="c1", keys=keys, concurrency=4)
            async with running(consumer), RpcClient(client, keys) as rpc:
                reply = await rpc.call(
                    "users.login",
                    {"email": "admin@example.com", "password": PASSWORD},
                    timeout=20,
                    response_type=LoggedIn,
                )
            return tokens.verify(signing_keys.from_environment(), reply.token)
        finally:
            await client.aclose()

    assert asyncio.run(login()).role == "admin"

    again = _users(redis_url, namespace, "create", "admin@example.com", "--password", PASSWORD)
    assert again.exit_code == 1
    assert "email already registered" in again.output


def test_the_cli_prompts_for_a_hidden_password_twice(
    sync_redis: redis.Redis, redis_url: str, namespace: str
) -> None:
    result = _users(redis_url, namespace, "create", "dave@example.com",
                    stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "created user dave@example.com" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-an-email", "--password", PASSWORD], "does not look like an email"),
        (["erin@example.com", "--admin", "--password", "short"], "password must be 8 to 128"),
    ],
)
def test_the_cli_refuses_bad_input_as_a_usage_error(
    sync_redis: redis.Redis, redis_url: str, namespace: str, args: list[str], message: str
) -> None:
    result = _users(redis_url, namespace, "create", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "streamcart users create --help" in result.output
    assert list(sync_redis.scan_iter(match=f"*{namespace}*")) == []
