"""A worker refuses a Redis that could evict the bus, with a message that says why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from streamcart.bus.embedded import EmbeddedRedis
from tests.integration.support import child_env, cli


def test_a_worker_refuses_an_evicting_server(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, appendonly=False)
    url = server.start(daemonize=False)
    try:
        client = redis.Redis.from_url(url)
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.close()
        result = subprocess.run(
            cli(url, "pre", "worker", "counter"),
            env=child_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        server.stop()
    assert result.returncode == 1
    assert "maxmemory-policy is 'allkeys-lru'" in result.stderr
    assert "noeviction" in result.stderr
