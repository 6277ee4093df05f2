"""`streamcart status` against a live worker on a real server."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis.asyncio import Redis

from streamcart.bus.embedded import EmbeddedRedis
from streamcart.cli import main
from tests.integration.faults import acl_user
from tests.integration.support import child_env, cli, poll_until


def _status(url: str, namespace: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["--redis-url", url, "--namespace", namespace, "status", *args]
    )
    return result.exit_code, result.output


def test_status_json_reports_a_running_worker(
    redis_url: str, namespace: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    inbox = f"{namespace}:inbox:counter"
    argv = cli(redis_url, namespace, "worker", "counter")
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(argv, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        for i in range(30):
            sync_redis.xadd(
                inbox, {"type": "counter.increment", "data": '{"name": "s"}', "id": f"s{i}"}
            )
        sync_redis.xadd(inbox, {"type": "counter.nope", "data": "{}"})  # a dead letter

        def reported() -> bool:
            code, out = _status(redis_url, namespace, "--json")
            if code != 0 or not json.loads(out)["services"]:
                return False
            [service] = json.loads(out)["services"]
            return service["handled"] == 30 and service["dead_lettered"] == 1

        poll_until(reported, within=30, what="status shows the handled messages")
        code, out = _status(redis_url, namespace, "--json")
        [service] = json.loads(out)["services"]
        assert service["service"] == "counter" and service["alive"] == 1
        assert service["dlq"] == 1 and service["pending"] == 0 and service["lag"] == 0
        assert [s["stream"] for s in service["streams"]] == [inbox]
        [instance] = service["instances"]
        assert instance["pid"] == worker.pid and instance["concurrency"] == 32

        code, out = _status(redis_url, namespace)
        assert code == 0 and "counter" in out and "to DLQ" in out
    finally:
        worker.terminate()
        try:
            assert worker.wait(30) == 0, "the worker did not stop on SIGTERM"
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    code, out = _status(redis_url, namespace, "--json")
    [service] = json.loads(out)["services"]
    assert service["alive"] == 0  # a stopped worker deregisters


def test_status_shows_how_durably_the_server_keeps_acknowledged_writes(
    redis_url: str, namespace: str, sync_redis: redis.Redis
) -> None:
    config = sync_redis.config_get("append*")
    mode = "off" if config["appendonly"] == "no" else config["appendfsync"]

    code, out = _status(redis_url, namespace, "--json")
    assert code == 0, out
    durability = json.loads(out)["durability"]
    assert (durability["mode"], durability["appendfsync"]) == (mode, config["appendfsync"])

    code, out = _status(redis_url, namespace)
    assert code == 0 and f"durability: {mode} (" in out


@pytest.mark.integration
@pytest.mark.standalone  # a server of its own, as `streamcart up` starts one
def test_status_of_the_embedded_server_says_every_acknowledged_write_is_on_disk(
    tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMCART_APPENDFSYNC", raising=False)
    server = EmbeddedRedis(tmp_path)
    try:
        url = server.start(daemonize=False)
        code, out = _status(url, namespace)
    finally:
        server.stop()
    assert code == 0, out
    assert "durability: always (every acknowledged write is on disk" in " ".join(out.split())


async def test_status_says_the_durability_is_unknown_where_config_is_refused(
    real_redis: Redis, redis_url: str, namespace: str
) -> None:
    async with acl_user(real_redis, redis_url) as user:
        await user.deny("config")
        # In a thread: the CLI runs an event loop of its own.
        code, out = await asyncio.to_thread(_status, user.url, namespace, "--json")
        assert code == 0, out
        assert json.loads(out)["durability"]["mode"] == "unknown"
        code, out = await asyncio.to_thread(_status, user.url, namespace)
        assert code == 0 and "durability: unknown (" in out
