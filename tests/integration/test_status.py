"""`streamcart status` against a live worker on a real server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import redis
from click.testing import CliRunner

from streamcart.cli import main
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
