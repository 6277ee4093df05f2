"""The CLI against a real server, as an operator uses it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from streamcart.cli import main
from tests.integration.support import child_env, cli


def _cli(url: str, namespace: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["--redis-url", url, "--namespace", namespace, *args], input=stdin
    )
    return result.exit_code, result.output


def test_publish_writes_the_contract_fields(
    redis_url: str, namespace: str, sync_redis: redis.Redis
) -> None:
    code, out = _cli(
        redis_url, namespace, "publish", "order.placed", '{"order_id": "o1"}', "--key", "o1"
    )
    assert code == 0
    [(_, fields)] = sync_redis.xrange(f"{namespace}:events:order")
    assert fields == {
        "type": "order.placed",
        "data": '{"order_id": "o1"}',
        "id": out.strip(),
        "key": "o1",
    }
    code, _ = _cli(redis_url, namespace, "publish", "orders.cancel", "{}", "--to", "orders")
    assert code == 0 and sync_redis.xlen(f"{namespace}:inbox:orders") == 1


def test_dlq_list_show_replay_and_purge(
    redis_url: str, namespace: str, sync_redis: redis.Redis
) -> None:
    dlq = f"{namespace}:dlq:orders"
    letters = [
        sync_redis.xadd(
            dlq,
            {
                "type": "orders.place",
                "data": "{}",
                "dlq_error": f"SchemaError: bad {i}",
                "dlq_attempts": "0",
                "dlq_id": f"1-{i}",
                "dlq_stream": f"{namespace}:inbox:orders",
                "dlq_service": "orders",
                "dlq_at": "1",
            },
        )
        for i in range(3)
    ]
    code, out = _cli(redis_url, namespace, "dlq", "list", "orders", "--json")
    assert code == 0
    assert [json.loads(line)["dlq_error"] for line in out.splitlines()] == [
        "SchemaError: bad 0",
        "SchemaError: bad 1",
        "SchemaError: bad 2",
    ]
    code, out = _cli(redis_url, namespace, "dlq", "show", "orders", letters[1])
    assert code == 0 and json.loads(out)["dlq_id"] == "1-1"

    code, out = _cli(redis_url, namespace, "dlq", "replay", "orders", letters[0])
    assert code == 0 and "replayed 1" in out
    [(_, replayed)] = sync_redis.xrange(f"{namespace}:inbox:orders")
    assert replayed == {"type": "orders.place", "data": "{}", "id": "1-0"}  # no dlq_* fields

    code, _ = _cli(redis_url, namespace, "dlq", "purge", "orders", stdin="n\n")
    assert code == 1 and sync_redis.xlen(dlq) == 2  # refused at the prompt: nothing deleted
    code, out = _cli(redis_url, namespace, "dlq", "purge", "orders", "--yes")
    assert code == 0 and "purged 2" in out and sync_redis.xlen(dlq) == 0


def test_dlq_show_of_a_missing_entry_fails_clearly(redis_url: str, namespace: str) -> None:
    code, out = _cli(redis_url, namespace, "dlq", "show", "orders", "1-1")
    assert code == 1 and "no dead letter 1-1" in out


def test_call_prints_the_reply_and_fails_clearly(
    redis_url: str, namespace: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    sync_redis.hset(f"{{{namespace}:counter}}:counts", "apples", 4)
    argv = cli(redis_url, namespace, "worker", "counter")
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(argv, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        code, out = _cli(redis_url, namespace, "call", "counter.get", '{"name": "apples"}')
        assert code == 0, out
        assert json.loads(out) == {"name": "apples", "count": 4}
        code, out = _cli(redis_url, namespace, "call", "counter.get", '{"name": "pears"}')
        assert code == 1 and "no counter named 'pears'" in out
        code, out = _cli(redis_url, namespace, "call", "nobody.get", "{}", "--timeout", "0.2")
        assert code == 1 and "no reply within 200 ms" in out
        code, out = _cli(redis_url, namespace, "call", "counter", "{}")
        assert code == 2 and "service.method" in out
    finally:
        worker.terminate()
        worker.wait(30)


def test_redis_starts_the_embedded_server_once_and_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STREAMCART_REDIS_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STREAMCART_HOME", str(tmp_path))
    first = CliRunner().invoke(main, ["redis"])
    try:
        assert first.exit_code == 0, first.output
        url = first.output.strip()
        assert url.startswith("redis://127.0.0.1:")
        again = CliRunner().invoke(main, ["redis"])
        assert again.output.strip() == url  # reused, not a second server
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
    finally:
        stopped = CliRunner().invoke(main, ["redis", "--stop"])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    assert "not running" in CliRunner().invoke(main, ["redis", "--stop"]).output
