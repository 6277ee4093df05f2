"""The supervised pool and `streamcart up`, as processes a user starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from tests.integration.support import child_env, cli, free_port, poll_until, pool_workers

pytestmark = pytest.mark.chaos


def publish(client: redis.Redis, namespace: str, count: int, prefix: str) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        pipe.xadd(
            f"{namespace}:inbox:counter",
            {"type": "counter.increment", "data": f'{{"name": "{prefix}"}}', "id": f"{prefix}-{i}"},
        )
    pipe.execute()


def test_a_pool_restarts_a_killed_child_and_stops_cleanly(
    redis_url: str, namespace: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    argv = cli(redis_url, namespace, "worker", "tests.integration.services:fast_counter", "-p", "2")
    with open(tmp_path / "pool.log", "wb") as log:
        pool = subprocess.Popen(argv, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    counts = f"{{{namespace}:counter}}:counts"
    try:
        poll_until(lambda: len(pool_workers(pool.pid)) == 2, what="two children")
        publish(sync_redis, namespace, 200, "a")
        poll_until(lambda: sync_redis.hget(counts, "a") == "200", what="first load handled")

        victim = sorted(pool_workers(pool.pid))[0]
        os.kill(victim, signal.SIGKILL)
        poll_until(
            lambda: len(pool_workers(pool.pid) - {victim}) == 2, what="the killed child restarted"
        )
        publish(sync_redis, namespace, 200, "b")
        poll_until(lambda: sync_redis.hget(counts, "b") == "200", what="second load handled")

        kids = pool_workers(pool.pid)
        pool.send_signal(signal.SIGTERM)
        assert pool.wait(30) == 0
        for kid in kids:
            assert not Path(f"/proc/{kid}").exists() or "Z" in _state(kid)
    finally:
        if pool.poll() is None:
            pool.kill()
            pool.wait()
    applied = sync_redis.hgetall(f"{{{namespace}:counter}}:applied")
    assert len(applied) == 400 and set(applied.values()) == {"1"}
    assert "exited with code -9; restarting" in (tmp_path / "pool.log").read_text()


def test_the_children_of_a_sigkilled_pool_stop_by_themselves(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    argv = cli(redis_url, namespace, "worker", "tests.integration.services:fast_counter", "-p", "2")
    with open(tmp_path / "pool.log", "wb") as log:
        pool = subprocess.Popen(argv, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        poll_until(lambda: len(pool_workers(pool.pid)) == 2, what="two children")
        kids = pool_workers(pool.pid)
        pool.kill()  # the supervisor dies without a word to its children
        pool.wait()
        poll_until(lambda: all(_state(kid) == "Z" for kid in kids), within=15,
                   what="the orphaned children to stop")  # fmt: skip
    finally:
        for kid in pool_workers(pool.pid) if pool.poll() is None else set():
            os.kill(kid, signal.SIGKILL)
    assert "the pool supervisor" in (tmp_path / "pool.log").read_text()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


def test_up_runs_everything_on_the_embedded_server(tmp_path: Path) -> None:
    """`streamcart up` with no URL: embedded Redis, the shop's workers, and the
    gateway answering HTTP through the real users service."""
    env = {k: v for k, v in child_env().items() if k not in ("STREAMCART_REDIS_URL", "REDIS_URL")}
    env["STREAMCART_HOME"] = str(tmp_path / "home")
    streamcart = [sys.executable, "-m", "streamcart"]
    port = free_port()
    argv = [*streamcart, "up", "--port", str(port)]
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url_file = tmp_path / "home" / "redis.url"
        poll_until(url_file.exists, what="the embedded server")
        client = redis.Redis.from_url(url_file.read_text().strip(), decode_responses=True)
        poll_until(lambda: bool(pool_workers(up.pid)), what="the workers")
        published = subprocess.run(
            [
                *streamcart,
                "publish",
                "inventory.add_stock",
                '{"sku": "up-tea", "qty": 3}',
                "--to",
                "inventory",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert published.stdout.strip()  # the message id
        stock = "{sc:inventory}:stock:up-tea"
        poll_until(lambda: client.hget(stock, "available") == "3", what="handled")
        client.close()

        base = f"http://127.0.0.1:{port}"
        poll_until(lambda: _get(f"{base}/readyz") == 200, within=60, what="the gateway ready")
        body = {"email": "Ann@Example.com", "password": "correct horse", "name": "Ann"}
        assert _post(f"{base}/api/users/register", body)[0] == 201
        login = {"email": "ann@example.com", "password": body["password"]}
        status, reply = _post(f"{base}/api/users/login", login)
        assert status == 200 and reply["token"]
        assert _post(f"{base}/api/users/register", body)[0] == 409
        # As a terminal's Ctrl-C or a container stop does: every process of the group at once.
        os.killpg(up.pid, signal.SIGTERM)
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        subprocess.run([*streamcart, "redis", "--stop"], env=env, timeout=60, check=False)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _post(url: str, body: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
