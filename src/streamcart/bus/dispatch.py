"""What happens to one stream entry: the failure semantics of contract section 3.

An entry is parsed, routed to its handler, decoded and handled; its effects
are committed exactly once. A malformed entry, an unknown type in an inbox, a
schema mismatch, a permanent error or too many deliveries send it to the
dead-letter stream at once; an unknown type on a topic is skipped; a
transient failure is retried in place (tenacity), then redelivered through
the inbox after an exponential backoff with jitter, then dead-lettered after
``max_attempts``. The consumer around it does the reading and acknowledging.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Protocol

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from streamcart.bus import delayed
from streamcart.bus.commit import Relay, commit
from streamcart.bus.context import Context
from streamcart.bus.deadletter import TRIMMED, dead_letter_fields, describe
from streamcart.bus.dedup import DedupWindow
from streamcart.bus.envelope import (
    ATTEMPT,
    CORRELATION_ID,
    ID,
    REPLY_TO,
    TYPE,
    Envelope,
    Fields,
    parse_entry,
)
from streamcart.bus.keys import Keys
from streamcart.bus.observer import ConsumerObserver
from streamcart.bus.options import ServiceOptions
from streamcart.bus.rawtext import is_decimal, is_utf8, undecodable_reason
from streamcart.bus.rpc import (
    Reply,
    RpcClient,
    is_client_facing,
    reply_error,
    reply_ok,
    trace_id_of,
)
from streamcart.bus.service import Handler, Service
from streamcart.errors import (
    DomainError,
    HandlerTimeoutError,
    MalformedEntryError,
    PermanentError,
    TransientError,
    UnavailableError,
    UnknownTypeError,
    WriteConflictError,
)
from streamcart.telemetry import tracing

# A handler's own OSError is a failure like any other; only these mean Redis is gone.
DISCONNECTED = (RedisConnectionError, RedisTimeoutError)
CONFLICT_TRIES = 5
TRIMMED_REASON = f"{TRIMMED}: the entry was deleted from the stream while still pending"


class Item:
    """An entry a consumer holds: read, being handled, or waiting for its ack."""

    __slots__ = ("deliveries", "entry_id", "fields", "stream", "worker")

    def __init__(self, stream: str, entry_id: str, fields: Fields | None, deliveries: int) -> None:
        self.stream = stream
        self.entry_id = entry_id
        self.fields = fields
        self.deliveries = deliveries
        # The task handling it, set by the consumer: what a handler timeout cancels.
        self.worker: asyncio.Task[Any] | None = None


class Stats:
    """Counters of one consumer, for status and metrics."""

    __slots__ = ("acked", "dead_lettered", "failed", "handled", "retried", "skipped")

    def __init__(self) -> None:
        self.handled = self.failed = self.retried = 0
        self.dead_lettered = self.skipped = self.acked = 0


def _is_retryable(exc: BaseException) -> bool:
    return not isinstance(exc, (PermanentError, *DISCONNECTED))


class Host(Protocol):
    """What the dispatcher needs of its consumer: current config and acks."""

    options: ServiceOptions
    settings: Any
    rpc: RpcClient

    def ack(self, item: Item, reply: Reply | None = None, relay: Relay | None = None) -> None: ...


class Dispatcher:
    """Runs one service's handlers on entries, as its consumer hands them over."""

    def __init__(
        self,
        service: Service,
        redis: Redis,
        keys: Keys,
        host: Host,
        *,
        stats: Stats,
        observers: Sequence[ConsumerObserver],
        log: logging.Logger,
    ) -> None:
        self.service = service
        self.redis = redis
        self.keys = keys
        self.host = host
        self.stats = stats
        self.observers = observers
        self.log = log
        self.inbox = keys.inbox(service.name)
        self.dedup = DedupWindow(redis, keys, service.name)
        # Handlers running, by task, with the monotonic time they must end by.
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()

    async def process(self, item: Item) -> None:
        """Handle one entry, or decide it is dead, skipped or to be retried later;
        inside a span of its trace when tracing is on."""
        if item.fields is not None and (reason := undecodable_reason(item.fields)):
            # Before any span: its attributes and the metrics take only real text.
            await self.dead_letter(item, reason, 0)
            return
        tracer = tracing.current
        if tracer is None:
            await self._process(item)
            return
        fields = item.fields or {}
        span = tracer.start_handling(fields, lambda: self._span_start(item, fields))
        if span is not None:
            with tracing.activated(span, fields):
                await self._process(item)
            return
        unsampled = tracing.keep_unsampled(fields)
        try:
            await self._process(item)
        finally:
            tracing.forget_unsampled(unsampled)

    def _span_start(self, item: Item, fields: Fields) -> tracing.SpanStart:
        """Name, kind and attributes of the span handling ``item`` (messaging
        semantic conventions; a request is an RPC server span). The attempt and
        the delivery count are there when above 1."""
        message_type = fields.get(TYPE) or "?"
        attempt = fields.get(ATTEMPT, "1")
        attributes: dict[str, Any] = {
            "messaging.system": tracing.MESSAGING_SYSTEM,
            "messaging.operation.type": "process",
            "messaging.destination.name": item.stream,
            "messaging.consumer.group.name": self.service.name,
            "messaging.message.id": item.entry_id,
            "streamcart.message.id": fields.get(ID, ""),
        }
        # Only when they say something: each attribute costs the SDK microseconds.
        if attempt != "1" and is_decimal(attempt):
            attributes["streamcart.attempt"] = int(attempt)
        if item.deliveries > 1:
            attributes["streamcart.delivery_count"] = item.deliveries
        if REPLY_TO not in fields:
            return f"process {message_type}", SpanKind.CONSUMER, attributes
        service, _, method = message_type.partition(".")
        attributes["rpc.system"] = tracing.RPC_SYSTEM
        attributes["rpc.service"] = service
        attributes["rpc.method"] = method
        attributes["messaging.message.conversation_id"] = fields.get(CORRELATION_ID, "")
        return message_type, SpanKind.SERVER, attributes

    async def _process(self, item: Item) -> None:
        if item.fields is None:
            await self.dead_letter(item, TRIMMED_REASON, 0)
            return
        try:
            envelope = parse_entry(
                item.stream, item.entry_id, item.fields, max_bytes=self.host.options.max_entry_bytes
            )
        except MalformedEntryError as exc:
            await self.dead_letter(item, describe(exc), 0)
            return
        handler = self.service.handler_for(envelope.type)
        if handler is None:
            if item.stream == self.inbox:
                error = UnknownTypeError(
                    f"service {self.service.name!r} has no handler for {envelope.type!r}; "
                    f"it handles {sorted(self.service.patterns())}"
                )
                await self._failed_for_good(item, envelope, error, 0)
            else:
                self.stats.skipped += 1
                self.host.ack(item)
            return
        # Before the delivery cap: a message whose effects were committed is done,
        # however often a crash loop delivered it, and must not become a dead letter.
        if (item.deliveries > 1 or envelope.attempt > 1) and await self.dedup.seen(envelope.id):
            self.stats.skipped += 1  # its effects were committed before a crash
            tracing.event("duplicate", reason="its effects were committed before")
            self.host.ack(item)
            return
        if item.deliveries > self.host.options.max_deliveries:
            cap = self.host.options.max_deliveries
            reason = (
                f"MaxDeliveriesExceeded: delivered {item.deliveries} times "
                f"(max_deliveries={cap}); the worker may be crashing on it"
            )
            await self.dead_letter(item, reason, envelope.attempt)
            return
        try:
            payload = handler.decoder.decode(envelope.data)
        except PermanentError as exc:
            await self._failed_for_good(item, envelope, exc, 0)
            return
        deadline = envelope.deadline_ms
        if deadline is not None and time.time() * 1000 > deadline:
            self.stats.skipped += 1  # its caller has given up: doing it now helps nobody
            self.log.info("dropped %s %s: past its deadline", envelope.type, envelope.id)
            tracing.event("dropped", reason="past its deadline")
            self.host.ack(item)
            return
        await self._handle(item, envelope, handler, payload)

    async def _handle(self, item: Item, envelope: Envelope, handler: Handler, payload: Any) -> None:
        started = time.perf_counter()
        try:
            result, relay = await self._invoke(item, envelope, handler, payload)
        except PermanentError as exc:
            await self._failed_for_good(item, envelope, exc, envelope.attempt)
            return
        except DISCONNECTED:
            raise
        except Exception as first:
            await self._retry(item, envelope, handler, payload, first)
            return
        await self._succeeded(item, envelope, started, result, relay)

    async def _succeeded(
        self, item: Item, envelope: Envelope, started: float, result: Any, relay: Relay | None
    ) -> None:
        self._handled(envelope, started)
        self.host.ack(item, reply_ok(envelope, result), relay)

    async def _failed_for_good(
        self, item: Item, envelope: Envelope, exc: Exception, attempts: int
    ) -> None:
        """A request gets the error as its reply; a domain answer (not found,
        conflict...) to a request is not a malfunction and is not dead-lettered."""
        reply = self._error_reply(envelope, exc)
        if reply is not None and isinstance(exc, DomainError):
            self.host.ack(item, reply)
            return
        await self.dead_letter(item, describe(exc), attempts, reply)

    def _error_reply(
        self, envelope: Envelope, exc: Exception, *, code: str | None = None
    ) -> Reply | None:
        """The reply to a failed request. The caller learns of a failure of the
        service's own only its trace id, so the detail goes to the log and, with
        its traceback, to the span."""
        reply = reply_error(envelope, exc, code=code)
        if reply is not None and not is_client_facing(exc):
            tracing.failed(None, exc)
            self.log.error(
                "%s %s failed (trace %s): %s", envelope.type, envelope.id,
                trace_id_of(envelope) or "-", describe(exc), exc_info=exc,
            )  # fmt: skip
        return reply

    def _handled(self, envelope: Envelope, started: float) -> None:
        self.stats.handled += 1
        if self.observers:
            seconds = time.perf_counter() - started
            self._notify("handled", envelope.type, seconds)

    def _notify(self, event: str, message_type: str, *args: float) -> None:
        for observer in self.observers:
            try:
                getattr(observer, event)(self.service.name, message_type, *args)
            except Exception:
                self.log.exception("observer %r failed on %s", observer, event)

    async def _invoke(
        self, item: Item, envelope: Envelope, handler: Handler, payload: Any
    ) -> tuple[Any, Relay | None]:
        """The handler's result, and its committed messages still to relay.

        The handler fails at ``handler_timeout_ms``: a hung handler would
        otherwise hold its entry forever, its claim renewed all along. The
        commit comes after, so a timed-out attempt commits nothing. A timer per
        handler would cost the consume loop a sixth of its speed, so
        :meth:`expire_overdue`, run by the consumer every fraction of the
        timeout, cancels the handlers past their time instead.
        """
        timeout_ms = self.host.options.handler_timeout_ms
        ctx = Context(
            self.service, envelope, self.redis, self.keys, self.log,
            config=self.host.settings, rpc=self.host.rpc,
            deadline_ms=int(time.time() * 1000) + timeout_ms,
        )  # fmt: skip
        task = item.worker or asyncio.current_task()
        assert task is not None  # always inside a task
        self._deadlines[task] = time.monotonic() + timeout_ms / 1000
        result: Any = None
        try:
            try:
                result = await handler.func(payload, ctx)
            except BaseException:
                if not self._timed_out(task):
                    raise  # the handler's own failure, or the worker is stopping
                timed_out = True  # it ended by our cancel, or by what it made of it
            else:
                # Also when the handler swallowed its cancellation and returned late.
                timed_out = self._timed_out(task)
            finally:
                del self._deadlines[task]
            if timed_out:
                raise HandlerTimeoutError(
                    f"{envelope.type} still running after handler_timeout_ms={timeout_ms}"
                )
            relay = None
            if ctx.has_effects or ctx.pipe is not None:
                relay = await commit(ctx, self.dedup, window_s=self.host.options.dedup_window_s)
            return result, relay
        finally:
            if ctx.pipe is not None:
                await ctx.pipe.reset()

    def _timed_out(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task``'s handler was cancelled for its time; takes the
        cancel back, so the task's later awaits and timeouts are not affected."""
        if not self._expired or task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def expire_overdue(self) -> int:
        """Cancel every handler running past its ``handler_timeout_ms``; how many."""
        now = time.monotonic()
        overdue = [task for task, deadline in self._deadlines.items() if deadline <= now]
        for task in overdue:
            if task not in self._expired:
                self._expired.add(task)
                task.cancel()
        return len(overdue)

    async def _retry(
        self, item: Item, envelope: Envelope, handler: Handler, payload: Any, first: Exception
    ) -> None:
        """After a failed first try: quick tries in place, then a delayed
        redelivery through the inbox, or the dead-letter stream."""
        opts = self.host.options
        attempt = envelope.attempt
        # A write conflict costs a round trip to retry and means a neighbour
        # committed: it gets a few more quick tries than a real failure does.
        tries = (
            max(opts.inline_attempts, CONFLICT_TRIES)
            if isinstance(first, WriteConflictError)
            else opts.inline_attempts
        )
        inline = min(tries, opts.max_attempts - attempt + 1)
        error: Exception = first
        self.stats.failed += 1
        self._notify("failed", envelope.type)
        self.log.warning("%s %s attempt %d failed: %s", envelope.type, envelope.id, attempt, first)
        tracing.event("attempt_failed", attempt=attempt, error=describe(first))
        if inline > 1:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(inline - 1),
                wait=wait_random_exponential(multiplier=opts.retry_initial_ms / 1000, max=1.0),
                retry=retry_if_exception(_is_retryable),
                reraise=True,
            )
            try:
                async for try_ in retrying:
                    with try_:
                        attempt += 1
                        started = time.perf_counter()
                        try:
                            result, relay = await self._invoke(item, envelope, handler, payload)
                        except Exception as exc:
                            self.stats.failed += 1
                            self._notify("failed", envelope.type)
                            tracing.event("attempt_failed", attempt=attempt, error=describe(exc))
                            raise
            except PermanentError as exc:
                await self._failed_for_good(item, envelope, exc, attempt)
                return
            except DISCONNECTED:
                raise
            except Exception as exc:
                error = exc
            else:
                await self._succeeded(item, envelope, started, result, relay)
                return
        if envelope.reply_to:
            # Its caller is waiting now: answer instead of retrying after a backoff.
            tracing.failed(None, describe(error))
            self.host.ack(item, self._error_reply(envelope, error, code=UnavailableError.code))
            return
        if attempt >= opts.max_attempts:
            await self.dead_letter(item, describe(error), attempt)
            return
        delay = getattr(error, "delay_ms", None) if isinstance(error, TransientError) else None
        if delay is None:
            cap = min(opts.retry_max_ms, opts.retry_initial_ms * 2 ** (attempt - 1))
            delay = int(random.uniform(cap / 2, cap))
        fields = {**envelope.fields, ID: envelope.id, ATTEMPT: str(attempt + 1)}
        await delayed.schedule(self.redis, self.keys, self.inbox, fields, delay)
        tracing.event("retry_scheduled", attempt=attempt + 1, delay_ms=delay)
        self.stats.retried += 1
        self._notify("retried", envelope.type)
        self.host.ack(item)

    async def dead_letter(
        self, item: Item, error: str, attempts: int, reply: Reply | None = None
    ) -> None:
        fields = dead_letter_fields(
            item.fields,
            error=error,
            attempts=attempts,
            stream=item.stream,
            entry_id=item.entry_id,
            service=self.service.name,
            at_ms=int(time.time() * 1000),
        )
        await self.redis.xadd(self.keys.dlq(self.service.name), fields)
        tracing.event("dead_lettered", reason=error, attempts=attempts)
        tracing.failed(None, error)
        self.stats.dead_lettered += 1
        message_type = (item.fields or {}).get("type") or "-"
        self._notify("dead_lettered", message_type if is_utf8(message_type) else "-")
        self.log.warning("dead-lettered %s %s: %s", item.stream, item.entry_id, error)
        self.host.ack(item, reply)
