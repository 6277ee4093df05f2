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

from streamcart.bus.embedded import EmbeddedRedis

# Tests that use any of these need a real server, so they are integration tests.
_REAL_SERVER_FIXTURES = frozenset({"redis_url", "real_redis", "sync_redis"})
_DELETE_BATCH = 500


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a real server with ``integration``."""
    for item in items:
        if _REAL_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``STREAMCART_TEST_REDIS_URL``, else a throwaway embedded server for the session."""
    url = os.environ.get("STREAMCART_TEST_REDIS_URL")
    if url:
        yield url
        return
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
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
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
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"*{namespace}*", count=1000))
        for start in range(0, len(keys), _DELETE_BATCH):
            client.delete(*keys[start : start + _DELETE_BATCH])
        client.close()


@pytest.fixture
async def fake_redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    """An in-memory fake with Lua support, on a server of its own."""
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()
