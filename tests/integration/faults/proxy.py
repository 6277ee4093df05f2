"""A link that misbehaves on demand.

:class:`FaultProxy` sits between a client and the test server and can, while
the test runs, pass bytes, delay them, freeze the link (bytes accepted and
held, nothing answered, connections open: a partition, as TCP sees one),
drop every connection or reset it. It runs on a thread and event loop of its
own, so a test that blocks its loop (or has none) cannot stall it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from streamcart.bus.connection import is_cluster_url

T = TypeVar("T")
CHUNK = 65_536
CALL_TIMEOUT_S = 5.0
# SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
_RST = struct.pack("ii", 1, 0)


class Mode(enum.Enum):
    PASS = "pass"
    DELAY = "delay"
    FREEZE = "freeze"
    DROP = "drop"
    RESET = "reset"


class _Link:
    """One client connection and its own connection to the server."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.pumps: list[asyncio.Task[None]] = []

    def close(self, *, reset: bool) -> None:
        for writer in (self.client, self.server):
            if reset:
                _set_rst(writer)
                writer.transport.abort()
            else:
                writer.close()
        for pump in self.pumps:
            pump.cancel()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of the server of ``redis_url``.

    ``with FaultProxy(url) as proxy:`` starts it; :attr:`url` is the same URL
    through the proxy. The mode changes take effect before they return:
    :meth:`passthrough`, :meth:`delay`, :meth:`freeze` (held bytes flow again
    on the next passthrough), :meth:`drop` (closes every connection, and each
    new one at once), :meth:`reset` (the same with RST). Closing the proxy
    closes everything it opened.
    """

    def __init__(self, redis_url: str) -> None:
        if is_cluster_url(redis_url):
            raise ValueError("a cluster's clients follow redirects to the real nodes; use one node")
        parts = urlsplit(redis_url)
        self._parts = parts
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.mode = Mode.PASS
        self.delay_ms = 0
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        """``redis_url`` with the proxy's address in place of the server's."""
        credentials = self._parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return self._parts._replace(netloc=netloc).geturl()

    @property
    def connections(self) -> int:
        """Client connections open through the proxy right now."""
        return self._run(self._count())

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        try:
            self.port = self._run(self._start())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def passthrough(self) -> None:
        self._run(self._switch(Mode.PASS))

    def delay(self, ms: int) -> None:
        """Hold every chunk, either way, ``ms`` milliseconds before passing it on."""
        self._run(self._switch(Mode.DELAY, ms))

    def freeze(self) -> None:
        self._run(self._switch(Mode.FREEZE))

    def drop(self) -> None:
        self._run(self._switch(Mode.DROP))

    def reset(self) -> None:
        self._run(self._switch(Mode.RESET))

    def close(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT_S)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    # -- on the proxy's own loop ---------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_S)

    async def _start(self) -> int:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_links(reset=False)
        pumps = [pump for link in self._links for pump in link.pumps]
        self._links.clear()
        if pumps:
            await asyncio.wait(pumps, timeout=CALL_TIMEOUT_S)
        if self._server is not None:
            await self._server.wait_closed()

    async def _count(self) -> int:
        return len(self._links)

    async def _switch(self, mode: Mode, delay_ms: int = 0) -> None:
        assert self._flowing is not None
        self.mode, self.delay_ms = mode, delay_ms
        if mode is Mode.FREEZE:
            self._flowing.clear()
            return
        self._flowing.set()
        if mode in (Mode.DROP, Mode.RESET):
            self._close_links(reset=mode is Mode.RESET)

    def _close_links(self, *, reset: bool) -> None:
        links, self._links = self._links, set()
        for link in links:
            link.close(reset=reset)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode in (Mode.DROP, Mode.RESET):
            if self.mode is Mode.RESET:
                _set_rst(writer)
                writer.transport.abort()
            else:
                writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Copy one direction; either side closing closes the whole link."""
        assert self._flowing is not None
        try:
            while data := await source.read(CHUNK):
                # Frozen: the chunk waits here and the rest in the kernel's buffers.
                await self._flowing.wait()
                if self.mode is Mode.DELAY and self.delay_ms:
                    await asyncio.sleep(self.delay_ms / 1000)
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if link in self._links:
                self._links.discard(link)
                link.close(reset=False)


def _set_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
