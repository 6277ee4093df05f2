"""The fault tools themselves, on a real server: each does what it says and undoes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError, ReadOnlyError, ResponseError

from streamcart.bus.connection import connect
from tests.integration.faults import FaultProxy, acl_user, misconf, readonly
from tests.integration.support import wait_for

# A cluster's clients go to its nodes, not to a proxy; the server faults change one server.
standalone = pytest.mark.standalone

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"
QUIET_S = 0.5  # how long "no answer" is watched for


def _command(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        parts.append(f"${len(word.encode())}\r\n{word}\r\n".encode())
    return b"".join(parts)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FaultProxy]:
    with FaultProxy(redis_url) as proxy:
        yield proxy


class Connections:
    """Raw connections through a proxy, all closed at the end of the test."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.writers: list[asyncio.StreamWriter] = []

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.proxy.port)
        self.writers.append(writer)
        return reader, writer

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


@pytest.fixture
def conns(proxy: FaultProxy) -> Iterator[Connections]:
    connections = Connections(proxy)
    try:
        yield connections
    finally:
        connections.close()


async def _ping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(PING)
    await writer.drain()
    return await reader.readexactly(len(PONG))


@standalone
async def test_pass_forwards_both_ways(
    proxy: FaultProxy, conns: Connections, real_redis: Redis, namespace: str
) -> None:
    reader, writer = await conns.open()
    assert await _ping(reader, writer) == PONG
    writer.write(_command("SET", f"{namespace}:k", "v"))
    assert await reader.readexactly(5) == b"+OK\r\n"
    assert await real_redis.get(f"{namespace}:k") == "v"


@standalone
async def test_delay_holds_each_chunk(proxy: FaultProxy, conns: Connections) -> None:
    proxy.delay(300)
    reader, writer = await conns.open()
    started = time.monotonic()
    assert await _ping(reader, writer) == PONG
    # The request and the reply are held 300 ms each.
    assert time.monotonic() - started >= 0.6
    proxy.passthrough()
    started = time.monotonic()
    assert await _ping(reader, writer) == PONG
    assert time.monotonic() - started < 0.6


@standalone
async def test_freeze_holds_bytes_without_closing_and_a_pass_delivers_them(
    proxy: FaultProxy, conns: Connections, real_redis: Redis, namespace: str
) -> None:
    reader, writer = await conns.open()
    assert await _ping(reader, writer) == PONG
    proxy.freeze()
    writer.write(_command("SET", f"{namespace}:held", "1"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readexactly(5), QUIET_S)
    assert await real_redis.get(f"{namespace}:held") is None
    assert proxy.connections == 1 and not reader.at_eof()
    # A new connection is accepted and held too.
    late_reader, late_writer = await conns.open()
    late_writer.write(PING)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(late_reader.readexactly(len(PONG)), QUIET_S)
    proxy.passthrough()
    assert await reader.readexactly(5) == b"+OK\r\n"
    assert await late_reader.readexactly(len(PONG)) == PONG
    assert await real_redis.get(f"{namespace}:held") == "1"


@standalone
async def test_drop_closes_existing_and_new_connections(
    proxy: FaultProxy, conns: Connections
) -> None:
    reader, writer = await conns.open()
    assert await _ping(reader, writer) == PONG
    proxy.drop()
    assert await reader.read() == b""  # FIN: an orderly close
    new_reader, _ = await conns.open()
    assert await new_reader.read() == b""
    proxy.passthrough()
    assert await _ping(*await conns.open()) == PONG


@standalone
async def test_reset_sends_rst_to_existing_and_new_connections(
    proxy: FaultProxy, conns: Connections
) -> None:
    reader, writer = await conns.open()
    assert await _ping(reader, writer) == PONG
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await _ping(reader, writer)
    with pytest.raises(ConnectionResetError):
        await _ping(*await conns.open())
    proxy.passthrough()
    assert await _ping(*await conns.open()) == PONG


@standalone
async def test_closing_the_proxy_closes_what_it_opened(redis_url: str, real_redis: Redis) -> None:
    with FaultProxy(redis_url) as proxy:
        conns = Connections(proxy)
        reader, writer = await conns.open()
        name = f"proxied-{proxy.port}"
        writer.write(_command("CLIENT", "SETNAME", name))
        assert await reader.readexactly(5) == b"+OK\r\n"
        port = proxy.port
    assert await reader.read() == b""
    conns.close()

    async def gone() -> bool:
        clients = await real_redis.client_list()
        return all(client.get("name") != name for client in clients)

    await wait_for(gone, within=5, what="the proxy's server connection to close")
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


# -- the server's own error replies ---------------------------------------------
async def test_an_acl_user_loses_one_command_and_is_deleted_after(
    redis_url: str, real_redis: Redis, namespace: str
) -> None:
    stream = f"{namespace}:s"
    async with acl_user(real_redis, redis_url) as user:
        client = connect(user.url)
        try:
            entry = await client.xadd(stream, {"f": "v"})
            await client.xgroup_create(stream, "g", id="0")
            await client.xreadgroup("g", "c", {stream: ">"})
            await user.deny("xack")
            with pytest.raises(NoPermissionError):
                await client.xack(stream, "g", entry)
            assert await client.xlen(stream) == 1  # the others still work
            await user.allow("xack")
            assert await client.xack(stream, "g", entry) == 1
        finally:
            await client.aclose()
    assert user.name not in await real_redis.acl_users()


@standalone
async def test_misconf_refuses_writes_until_it_is_undone(real_redis: Redis, namespace: str) -> None:
    key = f"{namespace}:k"
    await real_redis.set(key, "before")
    save = await real_redis.config_get("save")
    async with misconf(real_redis):
        with pytest.raises(ResponseError, match=r"^MISCONF"):
            await real_redis.set(key, "during")
        assert await real_redis.get(key) == "before"
    await real_redis.set(key, "after")
    assert await real_redis.get(key) == "after"
    assert await real_redis.config_get("save") == save


@standalone
async def test_readonly_refuses_writes_and_keeps_the_data(
    real_redis: Redis, namespace: str, tmp_path: Path, redis_url: str
) -> None:
    key = f"{namespace}:k"
    await real_redis.set(key, "before")
    async with readonly(real_redis, redis_url, tmp_path / "copy"):
        with pytest.raises(ReadOnlyError):
            await real_redis.set(key, "during")
        assert await real_redis.get(key) == "before"
    assert (await real_redis.info("replication"))["role"] == "master"
    assert await real_redis.get(key) == "before"
    await real_redis.set(key, "after")
    assert await real_redis.get(key) == "after"
