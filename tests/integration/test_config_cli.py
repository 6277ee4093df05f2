"""`streamcart config` against a real server, as an operator uses it."""

from __future__ import annotations

import json

import redis
from click.testing import CliRunner

from streamcart.cli import main

SPEC = "tests.shop:build"


def _cli(url: str, namespace: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--redis-url", url, "--namespace", namespace, *args])
    return result.exit_code, result.output


def test_set_get_and_list_show_values_and_their_source(
    redis_url: str, namespace: str, sync_redis: redis.Redis
) -> None:
    assert _cli(redis_url, namespace, "config", "set", "max_attempts", "4") == (
        0,
        "global max_attempts = 4 (config version 1)\n",
    )
    code, out = _cli(redis_url, namespace, "config", "set", SPEC, "greeting", "good day")
    assert (code, out) == (0, 'shop greeting = "good day" (config version 2)\n')
    assert _cli(redis_url, namespace, "config", "get", SPEC, "max_attempts") == (0, "4\n")
    code, out = _cli(redis_url, namespace, "config", "get", SPEC, "greeting", "--json")
    assert code == 0
    assert json.loads(out) == {
        "scope": "shop",
        "key": "greeting",
        "value": "good day",
        "source": "service",
    }
    code, out = _cli(redis_url, namespace, "config", "list", SPEC, "--json")
    assert code == 0
    rows = {row["key"]: (row["value"], row["source"]) for row in json.loads(out)}
    assert rows["max_attempts"] == (4, "global")
    assert rows["greeting"] == ("good day", "service")
    assert rows["discount_pct"] == (0, "default")
    code, out = _cli(redis_url, namespace, "config", "list")
    assert code == 0 and "config of global (version 2)" in out and "max_attempts" in out
    assert "greeting" not in out
    # What the store holds is JSON an operator can read with redis-cli.
    assert sync_redis.hgetall(f"{{{namespace}:config}}:scope:shop") == {"greeting": '"good day"'}


def test_history_and_unset(redis_url: str, namespace: str) -> None:
    for value in ("10", "20"):
        assert _cli(redis_url, namespace, "config", "set", SPEC, "discount_pct", value)[0] == 0
    assert _cli(redis_url, namespace, "config", "unset", SPEC, "discount_pct") == (
        0,
        "shop discount_pct unset (config version 3)\n",
    )
    code, out = _cli(redis_url, namespace, "config", "history", SPEC, "--json")
    assert code == 0
    changes = [json.loads(line) for line in out.splitlines()]
    assert [(c["version"], c["old"], c["new"]) for c in changes] == [
        (3, "20", None),
        (2, "10", "20"),
        (1, None, "10"),
    ]
    assert all(c["at_ms"] > 0 for c in changes)
    code, out = _cli(redis_url, namespace, "config", "history")
    assert code == 0 and "discount_pct" in out
    assert _cli(redis_url, namespace, "config", "get", SPEC, "discount_pct") == (0, "0\n")


def test_a_stale_key_written_by_hand_can_be_unset_and_is_flagged_meanwhile(
    redis_url: str, namespace: str, sync_redis: redis.Redis
) -> None:
    sync_redis.hset(f"{{{namespace}:config}}:scope:shop", "old_knob", "1")
    code, out = _cli(redis_url, namespace, "config", "list", SPEC)
    assert code == 0 and "ignored: unknown config key 'old_knob'" in out
    assert _cli(redis_url, namespace, "config", "unset", SPEC, "old_knob")[0] == 0
    assert sync_redis.hgetall(f"{{{namespace}:config}}:scope:shop") == {}
    code, out = _cli(redis_url, namespace, "config", "unset", SPEC, "old_knob")
    assert code == 2 and "unknown config key 'old_knob'" in out
