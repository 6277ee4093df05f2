"""Error replies from the server itself, made by configuration and undone after.

* :func:`acl_user`: a throwaway user whose commands the test can take away, so
  that one command answers ``NOPERM`` and the others still work.
* :func:`misconf`: every write answers ``MISCONF``, as after a failed RDB save.
* :func:`readonly`: the server is a replica for a while, so every write answers
  ``READONLY``, as a client of a demoted primary sees after a failover.

``misconf`` and ``readonly`` change the whole server: tests that use them carry
the ``standalone`` marker (``acl_user`` works on a cluster too). None of them
loses data: ``readonly`` has the server follow a copy of itself (a partial
resync, no flush), and ``misconf`` only breaks the next snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from streamcart.bus.connection import is_cluster
from streamcart.bus.embedded import EmbeddedRedis

SETTLE_S = 15.0
POLL_S = 0.02


class AclUser:
    """A user of the test server with every permission until :meth:`deny` takes some away."""

    def __init__(self, redis: Redis, name: str, password: str, url: str) -> None:
        self.redis = redis
        self.name = name
        self.password = password
        self.url = url  # the server's URL, signed in as this user

    async def deny(self, *commands: str) -> None:
        """``commands`` (``"xack"``, ``"evalsha"``...) answer NOPERM from now on."""
        await _acl(self.redis, "SETUSER", self.name, *(f"-{c}" for c in commands))

    async def allow(self, *commands: str) -> None:
        await _acl(self.redis, "SETUSER", self.name, *(f"+{c}" for c in commands))

    async def only_keys(self, *patterns: str) -> None:
        """Only keys matching ``patterns`` (ACL syntax: ``~p`` all, ``%R~p`` read,
        ``%W~p`` write) may be touched from now on; others answer NOPERM."""
        await _acl(self.redis, "SETUSER", self.name, "resetkeys", *patterns)


@contextlib.asynccontextmanager
async def acl_user(redis: Redis, redis_url: str) -> AsyncIterator[AclUser]:
    """A throwaway user with a password, allowed everything; deleted after (which
    also closes its connections)."""
    name, password = f"fault-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    await _acl(redis, "SETUSER", name, "reset", "on", f">{password}", "~*", "&*", "+@all")
    parts = urlsplit(redis_url)
    netloc = f"{name}:{password}@{parts.netloc.rpartition('@')[2]}"
    try:
        yield AclUser(redis, name, password, parts._replace(netloc=netloc).geturl())
    finally:
        await _acl(redis, "DELUSER", name)


async def _acl(redis: Redis, *args: str) -> None:
    # Users are per server: on a cluster, every node gets the change.
    nodes: dict[str, Any] = {}
    if is_cluster(redis):
        await redis.initialize()  # knows every node once it has asked one
        nodes["target_nodes"] = redis.get_nodes()
    await redis.execute_command("ACL", *args, **nodes)


@contextlib.asynccontextmanager
async def misconf(redis: Redis) -> AsyncIterator[None]:
    """Writes answer MISCONF: snapshots are switched on and one fails.

    ``CONFIG SET dir`` is refused on Redis 7 and Valkey (a protected config), and
    a server running as root writes anywhere; a directory where the snapshot's
    file belongs makes the save's final rename fail instead. Restored after:
    the directory goes, and the ``save`` setting comes back (a server that
    snapshots saves once more, so that its last save succeeded).
    """
    _refuse_cluster(redis)
    config = await redis.config_get("dir")
    config.update(await redis.config_get("dbfilename"))
    config.update(await redis.config_get("save"))
    config.update(await redis.config_get("stop-writes-on-bgsave-error"))
    blocker = Path(config["dir"]) / config["dbfilename"]
    if not blocker.parent.is_dir():
        pytest.skip(f"the server's directory {blocker.parent} is not on this machine")
    if blocker.exists():
        pytest.skip(f"{blocker} exists: a real snapshot is not replaced for a test")
    blocker.mkdir()
    try:
        await redis.config_set("stop-writes-on-bgsave-error", "yes")
        await redis.config_set("save", "86400 1")
        await _settled(redis, "persistence", "rdb_bgsave_in_progress", 0)
        await redis.bgsave()
        await _settled(redis, "persistence", "rdb_last_bgsave_status", "err")
        yield
    finally:
        blocker.rmdir()
        await redis.config_set("save", config["save"])
        await redis.config_set("stop-writes-on-bgsave-error", config["stop-writes-on-bgsave-error"])
        if config["save"]:
            await _settled(redis, "persistence", "rdb_bgsave_in_progress", 0)
            await redis.bgsave()
            await _settled(redis, "persistence", "rdb_last_bgsave_status", "ok")


@contextlib.asynccontextmanager
async def readonly(redis: Redis, redis_url: str, data_dir: Path) -> AsyncIterator[None]:
    """Writes answer READONLY: the server follows a throwaway copy of itself.

    A server told to follow an empty one would flush its data, so the copy is
    made first (a replica of the server, then promoted) and the server takes it
    as its primary by a partial resync. Restored after: the server is a
    primary again, its data as it was, and the copy is stopped.
    """
    _refuse_cluster(redis)
    parts = urlsplit(redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    copy_server = EmbeddedRedis(data_dir, appendonly=False)
    delay = (await redis.config_get("repl-diskless-sync-delay"))["repl-diskless-sync-delay"]
    copy_url = copy_server.start(daemonize=False)
    copy = Redis.from_url(copy_url, decode_responses=True)
    try:
        if parts.password:
            await copy.config_set("masterauth", parts.password)
        if parts.username:
            await copy.config_set("masteruser", parts.username)
        await redis.config_set("repl-diskless-sync-delay", "0")  # a copy in ms, not 5 s
        await copy.replicaof(host, port)
        await _caught_up(copy, redis)
        await copy.replicaof("NO", "ONE")
        copy_port = int(urlsplit(copy_url).port or 0)
        await redis.replicaof("127.0.0.1", copy_port)
        await _settled(redis, "replication", "master_link_status", "up")
        yield
    finally:
        with contextlib.suppress(Exception):
            await redis.replicaof("NO", "ONE")
        await redis.config_set("repl-diskless-sync-delay", delay)
        await copy.aclose()
        copy_server.stop()


async def _caught_up(replica: Redis, primary: Redis) -> None:
    async def probe() -> bool:
        info = await replica.info("replication")
        if info.get("master_link_status") != "up":
            return False
        offset = (await primary.info("replication"))["master_repl_offset"]
        return bool(info["master_repl_offset"] == offset)

    await _poll(probe, "the copy to catch up with the server")


async def _settled(redis: Redis, section: str, field: str, value: Any) -> None:
    async def probe() -> bool:
        return bool((await redis.info(section)).get(field) == value)

    await _poll(probe, f"INFO {section} {field} to be {value!r}")


async def _poll(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {SETTLE_S} s: {what}")
        await asyncio.sleep(POLL_S)


def _refuse_cluster(redis: Redis) -> None:
    if is_cluster(redis):
        raise ValueError("this fault reconfigures one standalone server; mark the test standalone")
