"""The gateway through a Redis outage, with every piece a real process.

A private server (its own port and data directory, AOF on), a ``streamcart
worker users`` process and a ``streamcart gateway`` process: the server is
stopped under them and started again on the same port and directory. While it
is down the gateway must answer at once and honestly (503/504, never a hang,
never another 5xx) and stay alive; once it is back everything must work again
without restarting anything.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from streamcart.bus.embedded import EmbeddedRedis
from tests.integration.error_bodies import ErrorBodies
from tests.integration.faults import FaultProxy
from tests.integration.support import Worker, cli, free_port, wait_for

pytestmark = pytest.mark.chaos

ALICE = {"email": "alice@example.com", "password": "s3cret-pass", "name": "Alice"}
LOGIN = {"email": ALICE["email"], "password": ALICE["password"]}
# The gateway's RPC timeout is 5 s and its readiness ping gives up after 2 s;
# an answer slower than this is a caller waiting on a dead bus.
PROMPT_S = 2.0
OUTAGE_ROUNDS = 3
RECOVERY_S = 15.0
START_S = 30.0
DOWN_STATUSES = {503, 504}
# The gateway's default request deadline: every wait on Redis a request makes shares it.
REQUEST_DEADLINE_S = 5.0


def _describe(response: httpx.Response) -> str:
    request = response.request
    return f"{request.method} {request.url.path} -> {response.status_code}: {response.text[:300]}"


async def _timed(
    client: httpx.AsyncClient, method: str, path: str, **kwargs: object
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


async def test_gateway_answers_503_while_redis_is_down_and_recovers_by_itself(
    tmp_path: Path, error_bodies: ErrorBodies
) -> None:
    """Proves the outage contract end to end: before the outage register and log in work;
    while the server is stopped, login and ``/readyz`` answer 503 or 504 well within
    ``PROMPT_S`` (no hang, no 500) and ``/healthz`` stays 200; after the server is started
    again on the same port and data directory, login (of the account registered before the
    outage, so the AOF kept it) and ``/readyz`` are 200 within ``RECOVERY_S``, with the same
    worker and gateway processes still running."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), appendonly=True)
    namespace = f"t{uuid.uuid4().hex[:10]}"
    http_port = free_port()
    processes: list[Worker] = []

    def context() -> str:
        return "\n".join(process.tail() for process in processes)

    try:
        url = server.start(daemonize=False)
        users = Worker(cli(url, namespace, "worker", "users", "-c", "8"), tmp_path / "users.log")
        processes.append(users)
        gateway = Worker(
            cli(url, namespace, "gateway", "--port", str(http_port)), tmp_path / "gateway.log"
        )
        processes.append(gateway)

        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http_port}", timeout=httpx.Timeout(30.0)
        ) as client:
            await _ready_and_registered(client, context)
            login = await client.post("/api/users/login", json=LOGIN)
            assert login.status_code == 200, _describe(login)

            server.stop()

            for _ in range(OUTAGE_ROUNDS):
                for method, path, body in (
                    ("POST", "/api/users/login", LOGIN),
                    ("GET", "/readyz", None),
                ):
                    response, elapsed = await _timed(client, method, path, json=body)
                    assert response.status_code in DOWN_STATUSES, _describe(response)
                    assert response.json()["error"]["code"] in {"unavailable", "timeout"}
                    assert elapsed < PROMPT_S, f"{method} {path} took {elapsed:.2f}s"
                health = await client.get("/healthz")
                assert health.status_code == 200, _describe(health)
            assert len(error_bodies.seen) >= 2 * OUTAGE_ROUNDS  # each checked for internals
            assert users.alive(), context()
            assert gateway.alive(), context()

            server.start(daemonize=False)

            seen: list[str] = []

            async def recovered() -> bool:
                statuses = []
                for method, path, body in (
                    ("POST", "/api/users/login", LOGIN),
                    ("GET", "/readyz", None),
                ):
                    response = await client.request(method, path, json=body)
                    assert response.status_code < 500 or response.status_code in DOWN_STATUSES, (
                        _describe(response)
                    )
                    seen.append(_describe(response))
                    statuses.append(response.status_code)
                return statuses == [200, 200]

            await wait_for(
                recovered,
                within=RECOVERY_S,
                what="login and /readyz to be 200 again",
                context=lambda: "\n".join(seen[-6:]) + "\n" + context(),
            )
            assert users.alive() and gateway.alive(), context()
    finally:
        for process in processes:
            process.kill()
        server.stop()


@pytest.mark.standalone  # the proxy stands in front of one server
async def test_a_request_through_a_frozen_link_answers_by_its_deadline_and_the_link_heals(
    redis_url: str, real_redis: Redis, namespace: str, tmp_path: Path, error_bodies: ErrorBodies
) -> None:
    """The gateway reaches Redis through a link that starts holding every byte and
    answering nothing (the socket stays open, so only a deadline notices): a login
    is answered 503 or 504 within about the request's deadline, not after the
    limiter's, discovery's and the call's socket timeouts in a row, and
    ``/healthz`` still answers. When the link passes again, logins work with
    the same gateway process."""
    http_port = free_port()
    with FaultProxy(redis_url) as proxy:
        users = Worker(cli(redis_url, namespace, "worker", "users", "-c", "8"),
                       tmp_path / "users.log")  # fmt: skip
        gateway = Worker(cli(proxy.url, namespace, "gateway", "--port", str(http_port)),
                         tmp_path / "gateway.log")  # fmt: skip
        processes = [users, gateway]

        def context() -> str:
            return "\n".join(process.tail() for process in processes)

        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{http_port}", timeout=httpx.Timeout(60.0)
            ) as client:
                await _ready_and_registered(client, context)
                seen_before = len(error_bodies.seen)  # the 503s of waiting for readiness

                proxy.freeze()
                response, elapsed = await _timed(client, "POST", "/api/users/login", json=LOGIN)
                assert response.status_code in DOWN_STATUSES, _describe(response)
                assert response.json()["error"]["code"] in {"unavailable", "timeout"}
                assert elapsed < 2 * REQUEST_DEADLINE_S, f"login took {elapsed:.1f}s"
                ready = await client.get("/readyz")  # its ping times out: no words of it
                assert ready.status_code == 503, _describe(ready)
                # Both answers were recorded, so each is checked for internals.
                assert len(error_bodies.seen) - seen_before == 2
                health, elapsed = await _timed(client, "GET", "/healthz")
                assert health.status_code == 200 and elapsed < PROMPT_S, _describe(health)

                proxy.passthrough()

                async def logged_in() -> bool:
                    login = await client.post("/api/users/login", json=LOGIN)
                    assert login.status_code < 500 or login.status_code in DOWN_STATUSES
                    return login.status_code == 200

                await wait_for(
                    logged_in, within=RECOVERY_S, what="login to work again", context=context
                )
                assert gateway.alive() and users.alive(), context()
        finally:
            for process in processes:
                process.kill()


async def _ready_and_registered(client: httpx.AsyncClient, context: Callable[[], str]) -> None:
    """Wait for the gateway to be ready, then register ALICE through it."""

    async def ready() -> bool:
        try:
            return (await client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(ready, within=START_S, what="the gateway to be ready", context=context)
    registered = await client.post("/api/users/register", json=ALICE)
    assert registered.status_code == 201, _describe(registered)
