"""One deadline per request, shared by every step that serves it.

A request may wait on Redis several times before its answer: the rate
limiter, discovery, one service call after another. Each bounded on its own,
they add up (three socket timeouts of 11 s against a frozen Redis); bounded
together, the client has its answer, a 504 at worst, by the deadline. Service
calls send the deadline along (:func:`current_deadline_ms`), so a service
drops a request whose caller has given up and nested calls never outlive it.
"""

from __future__ import annotations

import asyncio
import contextvars
import time

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from streamcart.errors import RpcTimeoutError

_deadline_ms: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "streamcart_request_deadline_ms", default=None
)


def current_deadline_ms() -> int | None:
    """The Unix time (ms) by which the request being served must be answered."""
    return _deadline_ms.get()


class DeadlineMiddleware(ASGIMiddleware):
    """Ends a request that is still unanswered after ``timeout_s`` with a 504."""

    def __init__(self, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError(f"the request timeout must be above 0 s, got {timeout_s!r}")
        self.timeout_s = timeout_s

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        token = _deadline_ms.set(int((time.time() + self.timeout_s) * 1000))
        try:
            async with asyncio.timeout(self.timeout_s) as limit:

                async def sending(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        limit.reschedule(None)  # an answer on its way is not cut off
                    await send(message)

                await next_app(scope, receive, sending)
        except TimeoutError:
            if not limit.expired():
                raise
            raise RpcTimeoutError(
                f"no answer within the request's deadline of {self.timeout_s:g} s"
            ) from None
        finally:
            _deadline_ms.reset(token)
