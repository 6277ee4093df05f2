"""The demo's token secret: generated once in Redis for `streamcart up --demo`
only; everything else that signs or verifies tokens refuses to start without one."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from click.testing import CliRunner

from streamcart import cli
from streamcart.bus.keys import Keys
from streamcart.demo import token_secret
from streamcart.workers.users.signing_keys import SECRET_ENV, SECRET_FILE_ENV, from_environment
from tests.unit.support import UpRecorder, record_up

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there


async def test_the_demo_generates_a_secret_once_and_hands_it_on(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    keys = Keys("t")
    environ: dict[str, str] = {}
    assert await token_secret(fake_redis, keys, environ)
    secret = environ[SECRET_ENV]
    assert await fake_redis.get(keys.state("users", "jwt-secret")) == secret
    assert from_environment(environ).current.secret == secret.encode()
    # A restarted demo signs with the same secret, so its tokens stay valid.
    again: dict[str, str] = {}
    assert await token_secret(fake_redis, keys, again)
    assert again == environ
    other: dict[str, str] = {}
    await token_secret(fake_redis, Keys("other"), other)
    assert other[SECRET_ENV] != secret


async def test_the_demo_keeps_a_configured_secret_and_stores_nothing(
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    environ = {SECRET_FILE_ENV: "/run/secrets/token"}
    assert not await token_secret(fake_redis, Keys("t"), environ)
    assert environ == {SECRET_FILE_ENV: "/run/secrets/token"}
    assert await fake_redis.keys("*") == []


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
    fake_redis: fakeredis.FakeAsyncRedis,
) -> None:
    """Set-then-get read ``None`` when a delete landed between them, and every
    token was then signed (and forgeable) with the secret b"None"."""
    environ: dict[str, str] = {}
    await token_secret(_DeletedRightAfterSet(fake_redis), Keys("t"), environ)  # type: ignore[arg-type]
    assert environ[SECRET_ENV] != "None"
    assert len(environ[SECRET_ENV]) >= 48


# -- the commands --------------------------------------------------------------------
@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> UpRecorder:
    return record_up(monkeypatch)


def _run(*args: str) -> tuple[int, str]:
    # None unsets: the session's configured secret is not there for this command.
    env: dict[str, str | None] = {SECRET_ENV: None, SECRET_FILE_ENV: None}
    result = CliRunner().invoke(cli.main, ["--redis-url", NO_REDIS, *args], env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("command", [["up"], ["gateway"], ["worker", "users"]])
def test_without_a_secret_nothing_that_uses_tokens_starts(
    recorder: UpRecorder, command: list[str]
) -> None:
    code, out = _run(*command)
    assert code == 1, out
    assert SECRET_ENV in out and SECRET_FILE_ENV in out
    assert recorder.environments == []  # refused before any process started


def test_up_demo_starts_its_processes_with_the_generated_secret(
    recorder: UpRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fakeredis.FakeServer()
    monkeypatch.setattr(
        cli, "connect", lambda url: fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    )
    code, out = _run("--namespace", "demo", "up", "--demo")
    assert code == 0, out
    [environment] = recorder.environments
    key = Keys("demo").state("users", "jwt-secret")
    stored = fakeredis.FakeRedis(server=server, decode_responses=True).get(key)
    assert stored and environment[SECRET_ENV] == stored
