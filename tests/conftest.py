"""Shared fixtures: a real server for integration tests, per-test namespaces and clients.

Tests share one server, so each works in its own namespace and cleans up only that:
nothing here ever flushes a database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
import redis
import redis.asyncio as aioredis

from streamcart.bus.connection import connect, connect_sync
from streamcart.bus.embedded import EmbeddedRedis
from streamcart.bus.embedded_cluster import EmbeddedCluster
from streamcart.bus.rawtext import ENCODING_ERRORS
from streamcart.workers.users.signing_keys import SECRET_ENV

# Tests that use any of these need a real server, so they are integration tests.
_REAL_SERVER_FIXTURES = frozenset({"redis_url", "real_redis", "sync_redis"})
_DELETE_BATCH = 500
ON_CLUSTER = os.environ.get("STREAMCART_TEST_CLUSTER") == "1"
TOKEN_SECRET = "test-token-signing-secret-" + "0" * 32


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs a real server with ``integration``.

    On a cluster only those run (the rest never touch a server), less the
    ``standalone`` ones.
    """
    for item in items:
        if _REAL_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    if ON_CLUSTER:
        keep = [
            item
            for item in items
            if item.get_closest_marker("integration") and not item.get_closest_marker("standalone")
        ]
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def token_secret() -> Iterator[str]:
    """The token signing secret of every process the tests start, configured as
    a deployment configures it (a test that needs another one patches it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_ENV, TOKEN_SECRET)
        yield TOKEN_SECRET


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``STREAMCART_TEST_REDIS_URL``, else a throwaway embedded server for the session.

    With ``STREAMCART_TEST_CLUSTER=1`` (``make test-cluster``) it is
    ``STREAMCART_TEST_CLUSTER_URL``, else a throwaway cluster of three masters;
    the URL says ``redis+cluster://``.
    """
    url = os.environ.get(
        "STREAMCART_TEST_CLUSTER_URL" if ON_CLUSTER else "STREAMCART_TEST_REDIS_URL"
    )
    if url:
        yield url
        return
    server: EmbeddedRedis | EmbeddedCluster
    if ON_CLUSTER:
        server = EmbeddedCluster(tmp_path_factory.mktemp("cluster"))
        url = server.start()
    else:
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False)
        url = server.start(daemonize=False)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace of this test alone, so tests on a shared server never collide."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def real_redis(redis_url: str, namespace: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the real server; the test's namespace is deleted afterwards."""
    client = connect(redis_url)
    try:
        yield client
    finally:
        try:
            keys = [key async for key in client.scan_iter(match=f"*{namespace}*", count=1000)]
            for start in range(0, len(keys), _DELETE_BATCH):
                await client.delete(*keys[start : start + _DELETE_BATCH])
        finally:
            await client.aclose()


@pytest.fixture
def sync_redis(redis_url: str, namespace: str) -> Iterator[redis.Redis]:
    """A blocking client, for tests that run the CLI (it owns its event loop)."""
    client = connect_sync(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"*{namespace}*", count=1000))
        for start in range(0, len(keys), _DELETE_BATCH):
            client.delete(*keys[start : start + _DELETE_BATCH])
        client.close()


@pytest.fixture
async def fake_redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    """An in-memory fake with Lua support, on a server of its own, decoding as the runtime does."""
    client = fakeredis.FakeAsyncRedis(
        server=fakeredis.FakeServer(), decode_responses=True, encoding_errors=ENCODING_ERRORS
    )
    try:
        yield client
    finally:
        await client.aclose()
