"""Posting alerts to a webhook, retried with backoff."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, stop_after_attempt, wait_exponential


def _post(url: str, body: bytes, timeout_s: float) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return int(response.status)


def webhook_sender(
    *, timeout_s: float = 5.0, first_wait_s: float = 0.5
) -> Callable[[str, bytes, int], Awaitable[None]]:
    """A sender that POSTs JSON, making up to ``attempts`` tries with backoff."""

    async def send(url: str, body: bytes, attempts: int) -> None:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=first_wait_s, max=10),
            reraise=True,
        ):
            with attempt:
                await asyncio.to_thread(_post, url, body, timeout_s)

    return send
