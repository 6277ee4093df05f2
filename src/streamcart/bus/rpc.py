"""Request/reply over streams.

A caller sends a request to the service's inbox with ``reply_to`` (its own
reply stream), ``correlation_id`` and ``deadline_ms``; one reader task per
client wakes the waiting call when the reply arrives. A reply that comes
after its caller gave up finds no waiter and is dropped; a caller that is gone
gets no reply at all (``NOMKSTREAM``), so nothing is left behind. Error
replies carry a code that becomes the same exception class on the caller's
side, and the error's message when it was written for the caller; anything
else (a Redis error reply, a bug) may tell internals, so its reply says only
that the service failed and in which trace. Responders send replies in the
pipelined round trip that acknowledges the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from types import TracebackType
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamcart.bus.envelope import (
    CORRELATION_ID,
    DEADLINE_MS,
    REPLY_TO,
    TRACEPARENT,
    Envelope,
    build_fields,
    encode_data,
)
from streamcart.bus.keys import Keys
from streamcart.bus.rawtext import printable
from streamcart.errors import (
    DomainError,
    InvalidError,
    MalformedEntryError,
    PermanentError,
    RpcTimeoutError,
    SchemaError,
    StreamcartError,
    UnavailableError,
    UnknownTypeError,
    error_from_reply,
)
from streamcart.resilience.breaker import Breakers
from streamcart.telemetry import tracing

log = logging.getLogger("streamcart.rpc")
REPLY_KEEP = 10_000
STATUS, CODE, MESSAGE, DATA = "status", "code", "message", "data"
# The code of a failure that is the service's own and will not pass (a commit
# refused on a key's type): no caller's class has it, so it stays a RemoteError.
INTERNAL = "internal"
# Errors whose message is written for the caller, and so is its reply's message:
# answers, a service's state, and what is wrong with the request as sent.
CLIENT_FACING: tuple[type[Exception], ...] = (
    DomainError,
    UnavailableError,
    RpcTimeoutError,
    SchemaError,
    MalformedEntryError,
    UnknownTypeError,
)
# A reply stream lives this long after its client's last sign of life.
STREAM_TTL_MS = 60_000
READ_BLOCK_MS = 500


class Reply(msgspec.Struct, frozen=True):
    """An answer on its way to a caller's reply stream."""

    stream: str
    fields: dict[str, str]


def reply_ok(request: Envelope, result: Any) -> Reply | None:
    """The reply for a request that succeeded; ``None`` when nobody asked."""
    data = "null" if result is None else encode_data(result)
    return _reply(request, {STATUS: "ok", DATA: data})


def reply_error(request: Envelope, exc: BaseException, *, code: str | None = None) -> Reply | None:
    """The reply for a request that failed; ``None`` when nobody asked.

    Its code names the exception class (or is ``code``). Its message is the
    exception's when that is written for the caller (:func:`is_client_facing`),
    else :func:`internal_message`: the detail is for the responder's log and
    span, which the caller finds by the trace id.
    """
    if code is None:
        code = _code_of(exc)
    message = str(exc) if is_client_facing(exc) else internal_message(request)
    return _reply(request, {STATUS: "error", CODE: code, MESSAGE: message})


def is_client_facing(exc: BaseException) -> bool:
    """Whether ``exc``'s message is written for the caller (:data:`CLIENT_FACING`)."""
    return isinstance(exc, CLIENT_FACING)


def internal_message(request: Envelope) -> str:
    """What a caller is told of a failure that is the service's own."""
    service = request.type.partition(".")[0]
    trace_id = trace_id_of(request)
    where = f" (trace {trace_id})" if trace_id else ""
    return f"internal error in the {service} service{where}; its log has the details"


def trace_id_of(request: Envelope) -> str | None:
    """The trace ``request`` belongs to: its caller's, else the one recorded here."""
    parent = tracing.parse_traceparent(request.fields.get(TRACEPARENT, ""))
    if parent is not None:
        return f"{parent.trace_id:032x}"
    return tracing.current_trace_id() if tracing.current is not None else None


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, DomainError | UnavailableError | RpcTimeoutError):
        return exc.code
    if isinstance(exc, SchemaError | MalformedEntryError | UnknownTypeError):
        return InvalidError.code  # a request the handler cannot take as sent
    if isinstance(exc, PermanentError):
        return INTERNAL
    return UnavailableError.code


def _reply(request: Envelope, fields: dict[str, str]) -> Reply | None:
    if not request.reply_to:
        return None
    fields[CORRELATION_ID] = request.fields.get(CORRELATION_ID, "")
    tracing.inject(fields)
    return Reply(request.reply_to, fields)


def queue_reply(pipe: Any, reply: Reply) -> None:
    """Add ``reply`` to a pipeline. ``NOMKSTREAM``: a caller that is gone (its
    stream expired or was deleted) must not get a stream recreated that nobody
    would ever read or delete."""
    pipe.xadd(reply.stream, reply.fields, maxlen=REPLY_KEEP, approximate=True, nomkstream=True)


class RpcClient:
    """Sends requests and awaits their replies; one reply stream per client.

    Use it as ``async with RpcClient(redis, keys) as rpc: await rpc.call(...)``.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        client_id: str | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        # One circuit per target service: a failing service fails fast.
        self.breakers = breakers
        self.reply_stream = keys.reply(client_id or uuid.uuid4().hex)
        self._waiters: dict[str, asyncio.Future[dict[str, str]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._last_id = "0-0"
        self._closing = False
        self._started = asyncio.Lock()

    async def __aenter__(self) -> RpcClient:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def pending(self) -> int:
        """Calls waiting for a reply right now."""
        return len(self._waiters)

    async def start(self) -> None:
        async with self._started:
            if self._reader is not None:
                return
            # The stream must exist before any request names it (see queue_reply).
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self.reply_stream, {"hello": "1"})
                pipe.pexpire(self.reply_stream, STREAM_TTL_MS)
                self._last_id, _ = await pipe.execute()
            self._reader = asyncio.create_task(self._read_replies())

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            # The reader sees the flag after its current blocking read; a cancel
            # is the fallback, as redis-py can swallow one on Python 3.11.
            self._closing = True
            _, late = await asyncio.wait([reader], timeout=READ_BLOCK_MS / 1000 + 1)
            for task in late:
                task.cancel()
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()
        with contextlib.suppress(RedisError):
            await self.redis.delete(self.reply_stream)

    async def call(
        self,
        target: str,
        data: Any = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - it becomes the request's deadline
        deadline_ms: int | None = None,
        response_type: Any = Any,
    ) -> Any:
        """Call ``service.method`` with ``data``; returns the decoded reply.

        The deadline is the earlier of ``timeout`` from now and ``deadline_ms``
        (an outer caller's deadline, so nested calls never outlive it).

        Raises:
            CircuitOpenError: the target's breaker is open (too many recent
                failures); nothing was sent.
            RpcTimeoutError: no reply by the deadline.
            NotFoundError, InvalidError, ConflictError, ForbiddenError,
            UnavailableError, RemoteError: the service answered with an error.
        """
        service, _, method = target.partition(".")
        if not service or not method:
            raise InvalidError(f"call target {target!r} must look like 'service.method'")
        if self.breakers is not None:
            breaker = self.breakers.get(service)
            return await breaker.call(self._call, target, data, timeout, deadline_ms, response_type)
        return await self._call(target, data, timeout, deadline_ms, response_type)

    async def _call(
        self,
        target: str,
        data: Any,
        timeout: float,  # noqa: ASYNC109 - it becomes the request's deadline
        deadline_ms: int | None,
        response_type: Any,
    ) -> Any:
        now_ms = int(time.time() * 1000)
        deadline = now_ms + int(timeout * 1000)
        if deadline_ms is not None:
            deadline = min(deadline, deadline_ms)
        if deadline <= now_ms:
            raise RpcTimeoutError(f"{target}: the deadline passed before the call was sent")
        correlation = uuid.uuid4().hex
        extra = {REPLY_TO: self.reply_stream, CORRELATION_ID: correlation,
                 DEADLINE_MS: str(deadline)}  # fmt: skip
        fields = build_fields(target, {} if data is None else data, extra=extra)
        span = tracing.calling(fields, target, correlation)
        with tracing.ending(span):
            # Every step is inside the deadline, the send too: the socket timeout
            # sits above the blocking reads' time, so a frozen link would hold a
            # send far longer. redis-py drops a connection whose command is cancelled.
            try:
                async with asyncio.timeout((deadline - now_ms) / 1000) as limit:
                    reply = await self._request(target, fields, correlation)
            except TimeoutError:
                if not limit.expired():
                    raise
                raise RpcTimeoutError(f"{target}: no reply within {deadline - now_ms} ms") from None
            if reply.get(STATUS) != "ok":
                # Any producer may write to a reply stream: its text may hold any bytes.
                code, message = reply.get(CODE, "internal"), reply.get(MESSAGE, "")
                raise error_from_reply(printable(code), printable(message))
        try:
            return msgspec.json.decode(reply.get(DATA, "null"), type=response_type)
        except msgspec.ValidationError as exc:
            raise StreamcartError(f"{target} replied with an unexpected shape: {exc}") from exc
        except (msgspec.DecodeError, UnicodeEncodeError):
            data = printable(reply.get(DATA, ""))[:200]
            raise StreamcartError(f"{target} replied with data not JSON: {data!r}") from None

    async def _request(
        self, target: str, fields: dict[str, str], correlation: str
    ) -> dict[str, str]:
        """Send the request and wait for its reply, with no limit of its own."""
        await self.start()
        waiter: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._waiters[correlation] = waiter
        try:
            await self.redis.xadd(self.keys.inbox(target.partition(".")[0]), fields)
            return await waiter
        finally:
            self._waiters.pop(correlation, None)

    async def _read_replies(self) -> None:
        last = self._last_id  # not "$": a reply may land before the first read
        failures = 0
        refreshed = 0.0
        while not self._closing:
            try:
                if time.monotonic() - refreshed > STREAM_TTL_MS / 3000:
                    await self.redis.pexpire(self.reply_stream, STREAM_TTL_MS)
                    refreshed = time.monotonic()
                reply = await self.redis.xread(
                    {self.reply_stream: last}, block=READ_BLOCK_MS, count=500
                )
                failures = 0
            except RedisError as exc:
                failures += 1
                log.warning("reply stream unreadable (%s); retrying", exc)
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 16)))
                continue
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id
                    waiter = self._waiters.get(fields.get(CORRELATION_ID, ""))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(fields)
