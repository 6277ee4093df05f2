"""`streamcart health SERVICE`, as a Kubernetes probe runs it: its exit code
follows a real worker process through start, run and a SIGKILL."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import redis

from tests.integration.services import REGISTRY_OPTIONS
from tests.integration.support import Workers, cli, run_process, wait_for

# The counter with a 2 s instance TTL (heartbeats every 300 ms): a dead instance
# stops counting as live within seconds, not the default five.
SPEC = "tests.integration.services:registry_counter"
TTL_S = REGISTRY_OPTIONS.instance_ttl_ms / 1000


async def _health(url: str, namespace: str, *args: str) -> tuple[int, str]:
    code, _, err = await run_process(cli(url, namespace, "health", *args), within=30)
    return code, err


async def test_health_follows_a_worker_from_start_to_sigkill(
    redis_url: str, namespace: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    code, err = await _health(redis_url, namespace, SPEC)
    assert code == 1
    assert f"counter: no instance on {socket.gethostname()}" in err
    assert "none anywhere" in err

    with Workers(redis_url, namespace, tmp_path) as workers:
        worker = workers.start(SPEC)
        await worker.consumer_name()

        async def healthy() -> bool:
            return (await _health(redis_url, namespace, SPEC))[0] == 0

        await wait_for(healthy, within=20, what="health to pass", context=workers.tails)
        # Live, but not on that host: a probe in another pod must fail.
        code, err = await _health(redis_url, namespace, SPEC, "--host", "another-pod")
        assert code == 1
        assert f"live ones run on {socket.gethostname()}" in err

        worker.send(signal.SIGKILL)  # no goodbye: only the TTL can tell
        killed_at = time.monotonic()
        await worker.wait_exit(within=10)

        async def failing() -> str | None:
            code, err = await _health(redis_url, namespace, SPEC)
            return err if code == 1 else None

        err = await wait_for(failing, within=TTL_S + 15, what="health to fail after the kill")
        assert time.monotonic() - killed_at >= TTL_S * 0.5  # not before the TTL ran out
        assert f"heartbeated in the last {REGISTRY_OPTIONS.instance_ttl_ms} ms" in err


async def test_an_unknown_service_is_a_usage_error(redis_url: str, namespace: str) -> None:
    code, err = await _health(redis_url, namespace, "nosuch")
    assert code == 2
    assert "unknown service 'nosuch'" in err


async def test_an_unreachable_redis_fails_with_a_clear_message(namespace: str) -> None:
    code, err = await _health("redis://127.0.0.1:1/0", namespace, "orders")
    assert code == 1
    assert "redis:" in err and "connecting to 127.0.0.1:1" in err
