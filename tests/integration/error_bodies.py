"""Every error body the HTTP clients of a test receive, checked for internals.

A client must never read how the shop failed inside (PITFALLS 25): no
exception class, no Redis error reply, no source path, no traceback, no
server address. The
recorder sees what httpx (the tests' own clients) and requests (schemathesis)
receive, whoever sent the request.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import requests

REDIS_ERROR_WORDS = (
    "WRONGTYPE", "NOPERM", "READONLY", "MISCONF", "LOADING", "OOM", "BUSY", "NOSCRIPT",
    "CROSSSLOT", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "NOGROUP", "BUSYGROUP", "UNBLOCKED",
    "EXECABORT", "NOAUTH", "WRONGPASS", "NOREPLICAS", "ERR",
)  # fmt: skip
INTERNALS = re.compile(
    r"Traceback \(most recent call last\)"
    r'|File "'
    r"|\b[A-Z]\w*(?:Error|Exception|Interrupt)\b"  # a class name: ResponseError, OSError
    # A Redis error reply reads "WRONGTYPE Operation against...": a word, a space, more.
    rf"|\b(?:{'|'.join(REDIS_ERROR_WORDS)}) \S"
    r"|(?:/[\w.-]+)+\.py\b"  # a source path
    r"|\b(?:\d{1,3}\.){3}\d{1,3}:\d+|\blocalhost:\d+"  # a server's address
)


def internals_in(text: str) -> list[str]:
    """What in ``text`` tells internals."""
    return [match.group(0) for match in INTERNALS.finditer(text)]


class ErrorBodies:
    """The 4xx and 5xx bodies seen, as ``(request, status, body)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def record(self, method: str, url: str, status: int, body: str) -> None:
        if status >= 400:
            self.seen.append((f"{method} {url}", status, body))

    def leaks(self) -> list[str]:
        """Each body that tells internals, with what gave it away."""
        return [
            f"{request} -> {status}: {internals_in(body)} in {body[:300]!r}"
            for request, status, body in self.seen
            if internals_in(body)
        ]

    def watch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Record what every httpx and requests client receives from now on."""
        async_send = httpx.AsyncClient.send
        sync_send = httpx.Client.send
        requests_send = requests.Session.send

        async def send_async(client: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
            response = await async_send(client, request, **kw)
            if not kw.get("stream"):
                self.record(request.method, str(request.url), response.status_code, response.text)
            return response

        def send_sync(client: httpx.Client, request: httpx.Request, **kw: Any) -> Any:
            response = sync_send(client, request, **kw)
            if not kw.get("stream"):
                self.record(request.method, str(request.url), response.status_code, response.text)
            return response

        def send_requests(
            session: requests.Session, request: requests.PreparedRequest, **kw: Any
        ) -> Any:
            response = requests_send(session, request, **kw)
            if response.status_code >= 400:  # reading it keeps it for the caller too
                self.record(str(request.method), str(request.url), response.status_code,
                            response.text)  # fmt: skip
            return response

        monkeypatch.setattr(httpx.AsyncClient, "send", send_async)
        monkeypatch.setattr(httpx.Client, "send", send_sync)
        monkeypatch.setattr(requests.Session, "send", send_requests)
