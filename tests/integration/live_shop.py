"""The whole shop as real processes: a gateway and a worker pool per service.

Logistics' delays are cut and the gateway's client budget raised before the
processes start; an admin token is signed with the configured key.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from streamcart.bus.connection import connect_sync
from streamcart.bus.loader import SHOP
from streamcart.workers.users.signing_keys import from_environment
from streamcart.workers.users.tokens import issue
from tests.integration.support import REPO_ROOT, Worker, child_env, cli, free_port, poll_until

START_S = 60.0
# Config set before the workers start: fast shipping, no client or login limit in the way.
SETTINGS = [
    ("logistics", "dispatch_after_ms", "150"),
    ("logistics", "deliver_after_ms", "150"),
    ("gateway", "rate", "100000"),
    ("gateway", "burst", "100000"),
    ("gateway", "login_account_burst", "100000"),
    ("gateway", "login_address_burst", "100000"),
]


# What the server or redis-py's cluster client says of a command spanning hash slots.
SLOT_ERRORS = (
    "CROSSSLOT",
    "RedisClusterException",
    "must map to the same key slot",
    "when running redis in cluster mode",
)


class LiveShop:
    """The base URL of a running shop, its processes and an admin's headers."""

    def __init__(self, redis_url: str, namespace: str, base_url: str) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.base_url = base_url
        self.processes: dict[str, Worker] = {}
        self.admin: dict[str, str] = {}

    def tails(self) -> str:
        return "\n".join(process.tail() for process in self.processes.values())

    def slot_errors(self) -> list[str]:
        """Log lines of any process where Redis Cluster refused a command that
        spans hash slots (only possible on a cluster, and a bug there)."""
        return [
            f"{name}: {line}"
            for name, process in self.processes.items()
            for line in process.log_path.read_text(errors="replace").splitlines()
            if any(marker in line for marker in SLOT_ERRORS)
        ]

    def configure(self, scope: str, key: str, value: str) -> None:
        """``streamcart config set SCOPE KEY VALUE``: the workers follow within a second."""
        argv = cli(self.redis_url, self.namespace, "config", "set", scope, key, value)
        subprocess.run(argv, check=True, cwd=REPO_ROOT, env=child_env(), capture_output=True)

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30, headers=headers)


@contextlib.contextmanager
def live_shop(
    redis_url: str,
    log_dir: Path,
    *,
    services: tuple[str, ...] = SHOP,
    processes: int = 1,
    concurrency: int = 16,
    settings: Sequence[tuple[str, str, str]] = (),
) -> Iterator[LiveShop]:
    """Start the shop in a fresh namespace, with ``settings`` (scope, key, value) set
    over the test defaults; kill it and delete the namespace's keys after."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    port = free_port()
    shop = LiveShop(redis_url, namespace, f"http://127.0.0.1:{port}")
    try:
        for scope, key, value in (*SETTINGS, *settings):
            shop.configure(scope, key, value)
        for service in services:
            argv = cli(redis_url, namespace, "worker", service, "-p", str(processes),
                       "-c", str(concurrency))  # fmt: skip
            shop.processes[service] = Worker(argv, log_dir / f"{service}.log")
        gateway = cli(redis_url, namespace, "gateway", "--port", str(port))
        shop.processes["gateway"] = Worker(gateway, log_dir / "gateway.log")
        admin_token, _ = issue(from_environment().current, "test-admin", "admin", ttl_s=3600)
        shop.admin = {"Authorization": f"Bearer {admin_token}"}

        def ready() -> bool:
            try:
                return httpx.get(f"{shop.base_url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        poll_until(ready, within=START_S, what=f"the shop to be ready\n{shop.tails()}")
        poll_until(lambda: _all_live(redis_url, namespace, services), within=START_S,
                   what=f"every service to register\n{shop.tails()}")  # fmt: skip
        yield shop
    finally:
        for process in shop.processes.values():
            process.kill()
        _delete_namespace(redis_url, namespace)


def _all_live(redis_url: str, namespace: str, services: tuple[str, ...]) -> bool:
    client = connect_sync(redis_url, decode_responses=True)
    try:
        return all(client.zcard(f"{namespace}:instances:{service}") for service in services)
    finally:
        client.close()


def _delete_namespace(redis_url: str, namespace: str) -> None:
    client = connect_sync(redis_url, decode_responses=True)
    try:
        stale = list(client.scan_iter(match=f"*{namespace}*", count=1000))
        for start in range(0, len(stale), 500):
            client.delete(*stale[start : start + 500])
    finally:
        client.close()


async def shopper(shop: LiveShop) -> dict[str, str]:
    """A registered, logged-in user's headers."""
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    account = {"email": email, "password": "s3cret-pass", "name": "Shopper"}
    async with shop.client() as client:
        assert (await client.post("/api/users/register", json=account)).status_code == 201
        login = await client.post("/api/users/login", json={"email": email,
                                                           "password": "s3cret-pass"})  # fmt: skip
        assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}
