"""The consumer runtime: one service's work loop inside one process.

A reader fetches batches with XREADGROUP across the service's streams into a
local queue bounded by ``prefetch``; ``concurrency`` worker tasks hand each
entry to the :class:`~streamcart.bus.dispatch.Dispatcher` (what happens to an
entry); acknowledgements are flushed in pipelined XACK batches. Side loops
renew the claim on in-flight entries (a long handler is never reclaimed from
a live worker), reclaim the entries of dead consumers, move due delayed
messages, trim streams safely, relay stale outbox entries and delete the
dedup buckets past the window that no message in flight needs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamcart.bus import claims, dedup, delayed
from streamcart.bus.commit import Relay, relay_stale, schedule_delayed
from streamcart.bus.connection import is_cluster
from streamcart.bus.dispatch import TRIMMED_REASON, Dispatcher, Item, Stats
from streamcart.bus.keys import Keys
from streamcart.bus.observer import ConsumerObserver
from streamcart.bus.options import ServiceOptions
from streamcart.bus.rpc import Reply, RpcClient, queue_reply
from streamcart.bus.scripts import Script
from streamcart.bus.server_errors import stream_gone, waiting_reason
from streamcart.bus.service import Service
from streamcart.resilience.breaker import Breakers

_trim = Script("trim.lua")
# A side loop whose job raised something other than a Redis error this many
# times in a row is broken, not unlucky: the worker exits and its pool restarts it.
BROKEN_AFTER = 3
# A loop still waiting says so in the log again after this many seconds.
REPEAT_WARNING_S = 30.0


class Consumer:
    """Runs one service's handlers as consumer ``name`` of the service's groups."""

    def __init__(
        self,
        service: Service,
        redis: Redis,
        *,
        name: str,
        keys: Keys | None = None,
        concurrency: int = 32,
        logger: logging.Logger | None = None,
        observers: Sequence[ConsumerObserver] = (),
    ) -> None:
        self.service = service
        self.redis = redis
        self.name = name
        self.keys = keys or Keys()
        self.options = service.options
        # What handlers see as ctx.config; replaced whole on hot reload.
        self.settings: Any = service.settings_type() if service.settings_type else None
        # The config store version those options and settings come from (0: defaults).
        self.config_version = 0
        self.concurrency = max(1, concurrency)
        self.group = service.name
        self.streams = service.streams(self.keys)
        self.inbox = self.keys.inbox(service.name)
        self.log = logger or logging.getLogger(f"streamcart.worker.{service.name}")
        self.stats = Stats()
        self.observers = list(observers)
        # For handlers' ctx.call(); its reply stream is made on the first call.
        self.rpc = RpcClient(
            redis, self.keys, client_id=f"{service.name}.{uuid.uuid4().hex}", breakers=Breakers()
        )
        self.dispatcher = Dispatcher(
            service,
            redis,
            self.keys,
            self,
            stats=self.stats,
            observers=self.observers,
            log=self.log,
        )
        # A deque and one event instead of asyncio.Queue: a wake-up per batch, not per entry.
        self._queue: collections.deque[Item] = collections.deque()
        self._work_ready = asyncio.Event()
        self._inflight: dict[tuple[str, str], Item] = {}
        self._acks: dict[str, list[str]] = {}
        self._replies: list[Reply] = []
        self._relays: list[Relay] = []
        self._ack_wanted = asyncio.Event()
        self._room = asyncio.Event()
        self._running = 0
        self._idle = asyncio.Event()
        self._stopping = False
        self._drained = False
        self._stopped = asyncio.Event()
        self._ready = asyncio.Event()
        self._readers_ready = 0
        # Bumped to ask every read loop to re-read this consumer's pending entries.
        self._recovery_requested = 1
        # What each loop that cannot do its job is waiting for, and since when it said so.
        self._waiting: dict[str, tuple[str, float]] = {}

    # -- lifecycle ----------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then shut down gracefully: stop
        reading, let running handlers finish within ``shutdown_grace_s``,
        flush acknowledgements and leave unstarted entries pending for others."""
        if not await self._retrying("creating groups", self._create_groups, stop):
            return  # stopped before Redis let it start: nothing was read
        workers = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        acker = asyncio.create_task(self._ack_loop())
        groups = self._read_groups()
        side = [
            *(asyncio.create_task(self._read_loop(streams, len(groups))) for streams in groups),
            asyncio.create_task(self._every(self._renew_interval, self._renew)),
            asyncio.create_task(self._every(self._reclaim_interval, self._reclaim)),
            asyncio.create_task(self._every(lambda: 0.2, self._move_delayed)),
            asyncio.create_task(self._every(lambda: 10.0, self._trim_streams)),
            asyncio.create_task(self._every(lambda: 5.0, self._relay_outbox)),
            asyncio.create_task(self._every(self._dedup_interval, self._collect_dedup)),
            asyncio.create_task(self._every(self._expiry_interval, self._expire_handlers)),
        ]
        try:
            stopper = asyncio.create_task(stop.wait())
            # Every loop is watched: one that ends before the stop failed, and so
            # does the worker (its pool starts a new one), never a quiet half-worker.
            await asyncio.wait([stopper, acker, *side], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in (acker, *side):
                if task.done() and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            # Loops stop between Redis commands: cancelling one mid-command can
            # leave the connection (or a fake of it) in an unknown state.
            self._stopping = True
            self._stopped.set()
            self._room.set()
            _, late = await asyncio.wait(side, timeout=self.options.block_ms / 1000 + 5)
            await _cancel(list(late))
            self._drop_queued()
            await self._wait_idle(grace_s=self.options.shutdown_grace_s)
            await _cancel(workers)
            # No handler runs any more: the acker flushes what is left and returns.
            # Cancelling it mid-flush instead could lose acknowledgements.
            self._drained = True
            self._ack_wanted.set()
            with contextlib.suppress(RedisError):
                await self.rpc.aclose()
            try:
                await asyncio.wait_for(acker, 5.0)
            except (TimeoutError, RedisError) as exc:
                self.log.warning("could not flush the last acknowledgements: %r", exc)

    async def _create_groups(self) -> None:
        await claims.ensure_groups(self.redis, self.streams, self.group)

    def apply_options(self, options: ServiceOptions) -> None:
        """Use new options from now on (hot reload): every loop reads them afresh."""
        self.options = options

    def apply_settings(self, settings: Any) -> None:
        """Hand ``settings`` to handlers as ``ctx.config`` from the next message on."""
        self.settings = settings

    @property
    def prefetch(self) -> int:
        """Entries held at most: read ahead of the handlers, follows reloaded options."""
        return max(self.options.batch_size, 2 * self.concurrency)

    def request_recovery(self) -> None:
        """Re-read this consumer's pending entries soon, e.g. after claiming
        the entries of a dead instance for it."""
        self._recovery_requested += 1

    @property
    def in_flight(self) -> int:
        """Entries held: queued, being handled, or waiting for their ack."""
        return len(self._inflight)

    @property
    def ready(self) -> asyncio.Event:
        """Set once the consumer has recovered its own pending entries and reads new ones."""
        return self._ready

    @property
    def waiting_for(self) -> str | None:
        """What keeps this consumer from working, in words (``None``: it works).

        Shown by ``streamcart status`` and failing ``streamcart health``.
        """
        if not self._waiting:
            return None
        return "; ".join(f"{loop}: {reason}" for loop, (reason, _) in self._waiting.items())

    def _drop_queued(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            self._inflight.pop((item.stream, item.entry_id), None)

    async def _wait_idle(self, *, grace_s: float) -> None:
        if self._running:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
            if self._running:
                self.log.warning("%d handlers still running after the grace period", self._running)

    # -- reading ------------------------------------------------------------
    def _read_groups(self) -> list[list[str]]:
        """The streams one XREADGROUP can read together: all of them on a
        standalone server; on a cluster, those sharing a hash slot."""
        if not is_cluster(self.redis):
            return [self.streams]
        by_slot: dict[int, list[str]] = {}
        for stream in self.streams:
            by_slot.setdefault(self.redis.keyslot(stream), []).append(stream)
        return list(by_slot.values())

    async def _read_loop(self, streams: list[str], readers: int) -> None:
        """Read ``streams`` for the group; ``readers`` loops do so side by side
        (one per slot on a cluster), so each may read up to the free room."""
        read_ids = dict.fromkeys(streams, ">")
        recovered = 0
        failures = 0
        groups_missing = False
        while not self._stopping:
            try:
                if groups_missing:
                    await claims.ensure_groups(self.redis, streams, self.group)
                    groups_missing = False
                if recovered < self._recovery_requested:
                    wanted = self._recovery_requested
                    await self._recover_own_pending(streams)
                    if not recovered:
                        self._readers_ready += 1
                        if self._readers_ready == readers:
                            self._ready.set()
                    recovered = wanted
                room = await self._wait_for_room()
                if self._stopping:
                    return
                reply = await self.redis.xreadgroup(
                    self.group,
                    self.name,
                    read_ids,
                    count=min(room, self.options.batch_size),
                    block=self.options.block_ms,
                )
                if failures:
                    self._resumed("reading")
                failures = 0
                if self._stopping:
                    return  # what this last read got stays pending for the next owner
            except RedisError as exc:
                # A deleted stream, a failover, a busy or loading server: wait
                # and read again, recreating the group where the stream is gone.
                failures += 1
                groups_missing = groups_missing or stream_gone(exc)
                self.request_recovery()
                await self._pause("reading", exc, failures)
                continue
            for stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._enqueue(Item(stream, entry_id, fields, 1))

    async def _recover_own_pending(self, streams: list[str]) -> None:
        """Re-read what this consumer name holds pending: work a crashed or
        disconnected predecessor did not acknowledge."""
        for stream in streams:
            after = "0"
            while not self._stopping:
                room = await self._wait_for_room()
                entries = await claims.read_own_pending(
                    self.redis,
                    stream,
                    self.group,
                    self.name,
                    after,
                    min(room, self.options.batch_size),
                )
                if not entries:
                    break
                ids = [entry_id for entry_id, _ in entries]
                counts = await claims.delivery_counts(
                    self.redis, stream, self.group, self.name, ids
                )
                for entry_id, fields in entries:
                    self._enqueue(Item(stream, entry_id, fields, counts.get(entry_id, 2)))
                after = ids[-1]

    async def _reclaim(self) -> None:
        """Take over entries idle past the claim timeout (their consumer is dead)."""
        for stream in self.streams:
            cursor = "0-0"
            while not self._stopping:
                room = await self._wait_for_room()
                cursor, entries, deleted = await claims.autoclaim(
                    self.redis,
                    stream,
                    self.group,
                    self.name,
                    min_idle_ms=self.options.claim_timeout_ms,
                    cursor=cursor,
                    count=min(room, self.options.batch_size),
                )
                for entry_id in deleted:
                    await self.dead_letter_trimmed(stream, entry_id)
                ids = [entry_id for entry_id, _ in entries]
                counts = await claims.delivery_counts(
                    self.redis, stream, self.group, self.name, ids
                )
                for entry_id, fields in entries:
                    self._enqueue(Item(stream, entry_id, fields, counts.get(entry_id, 2)))
                if entries:
                    self.log.info("reclaimed %d entries of %s", len(entries), stream)
                if cursor == "0-0":
                    break

    async def dead_letter_trimmed(self, stream: str, entry_id: str) -> None:
        """Dead-letter (reason ``trimmed``) and acknowledge a pending entry
        whose entry was deleted from ``stream``: nothing is left to handle."""
        await self.dispatcher.dead_letter(Item(stream, entry_id, None, 0), TRIMMED_REASON, 0)

    def _enqueue(self, item: Item) -> None:
        key = (item.stream, item.entry_id)
        if key in self._inflight:
            return
        self._inflight[key] = item
        self._queue.append(item)
        self._work_ready.set()

    async def _wait_for_room(self) -> int:
        while (room := self.prefetch - len(self._inflight)) <= 0 and not self._stopping:
            self._room.clear()
            await self._room.wait()
        return max(room, 1)

    # -- handling -----------------------------------------------------------
    async def _work(self) -> None:
        queue = self._queue
        me = asyncio.current_task()
        while True:
            while not queue:
                self._work_ready.clear()
                await self._work_ready.wait()
            item = queue.popleft()
            self._running += 1
            try:
                item.worker = me
                await self.dispatcher.process(item)
            except RedisError as exc:
                # Leave it pending: recovery reads it again once Redis answers.
                self.log.warning("%s while handling %s", waiting_reason(exc), item.entry_id)
                self.request_recovery()
                self._forget(item)
            except Exception:
                self.log.exception("internal error handling %s; left pending", item.entry_id)
                self._forget(item)
            finally:
                self._running -= 1
                if not self._running:
                    self._idle.set()

    # -- acknowledging ------------------------------------------------------
    def ack(self, item: Item, reply: Reply | None = None, relay: Relay | None = None) -> None:
        """Acknowledge ``item`` with the next pipelined batch, after publishing
        the messages its handler committed (``relay``) and sending ``reply``.
        A crash in between redelivers the entry, and its committed messages
        wait in the outbox for :func:`relay_stale`: nothing is lost."""
        self._acks.setdefault(item.stream, []).append(item.entry_id)
        if reply is not None:
            self._replies.append(reply)
        if relay is not None and relay.messages:
            self._relays.append(relay)
        self._ack_wanted.set()

    def _forget(self, item: Item) -> None:
        self._inflight.pop((item.stream, item.entry_id), None)
        self._room.set()

    async def _ack_loop(self) -> None:
        """Flush acknowledgements as they come; a failed flush keeps them and
        tries again with backoff (READONLY, NOPERM, MISCONF... pass)."""
        failures = 0
        while True:
            await self._ack_wanted.wait()
            self._ack_wanted.clear()
            try:
                await self._flush_acks()
                if failures:
                    self._resumed("acknowledging")
                failures = 0
            except RedisError as exc:
                if self._drained and failures >= 3:
                    raise
                failures += 1
                self._ack_wanted.set()
                await self._pause("acknowledging", exc, failures, interruptible=False)
            if self._drained and not self._acks:
                return

    async def _flush_acks(self) -> None:
        """One pipelined round trip: committed messages, replies, acknowledgements.

        Raises:
            RedisError: Redis failed the round trip (everything is kept for the
                next flush) or refused acknowledgements (those are kept).
        """
        if not self._acks:
            return
        acks, self._acks = self._acks, {}
        replies, self._replies = self._replies, []
        relays, self._relays = self._relays, []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for relay in relays:
                    for out in relay.messages:
                        if not out.delay_ms:
                            pipe.xadd(out.stream, out.fields)
                for reply in replies:
                    queue_reply(pipe, reply)
                for stream, ids in acks.items():
                    pipe.xack(stream, self.group, *ids)
                results = await pipe.execute(raise_on_error=False)
        except BaseException:
            for stream, ids in acks.items():  # keep them for the next flush
                self._acks.setdefault(stream, []).extend(ids)
            self._replies[:0] = replies
            self._relays[:0] = relays
            raise
        relayed = self._check_flush(relays, replies, results)
        refused: RedisError | None = None
        for (stream, ids), result in zip(acks.items(), results[-len(acks) :], strict=True):
            if isinstance(result, RedisError):
                refused = result
                self._acks.setdefault(stream, []).extend(ids)
                continue
            self.stats.acked += len(ids)
            for entry_id in ids:
                self._inflight.pop((stream, entry_id), None)
        self._room.set()
        await self._clear_outbox(await self._schedule_delayed(relayed))
        if refused is not None:
            raise refused

    def _check_flush(
        self, relays: list[Relay], replies: list[Reply], results: list[Any]
    ) -> list[Relay]:
        """The relays whose every message went out. A message that cannot be
        written stays in the outbox (``relay_stale`` tries again); a reply that
        cannot be written (a ``reply_to`` naming some other kind of key, say) is
        its caller's problem; the acknowledgements are checked by the caller."""
        position = 0
        relayed = []
        for relay in relays:
            sent = sum(1 for out in relay.messages if not out.delay_ms)
            outcomes = results[position : position + sent]
            position += sent
            failed = [r for r in outcomes if isinstance(r, Exception)]
            if failed:
                self.log.error("could not publish to %s: %s", relay.messages[0].stream, failed[0])
            else:
                relayed.append(relay)
        for reply, result in zip(replies, results[position:], strict=False):
            if isinstance(result, Exception):
                self.log.warning("reply to %s failed: %s", reply.stream, result)
        return relayed

    async def _schedule_delayed(self, relayed: list[Relay]) -> list[Relay]:
        """Put the delayed messages of ``relayed`` in their delayed sets; the
        relays that could not be finished stay in the outbox for the sweeper."""
        done = []
        for relay in relayed:
            try:
                await schedule_delayed(self.redis, self.keys, relay.messages)
            except RedisError as exc:
                self.log.warning("delayed send deferred (%s); the sweeper will finish it", exc)
                continue
            done.append(relay)
        return done

    async def _clear_outbox(self, relayed: list[Relay]) -> None:
        """Delete what was published from the outboxes; if this fails, the
        sweeper publishes it again and consumers drop the copies by id."""
        if not relayed:
            return
        by_outbox: dict[str, list[str]] = {}
        for relay in relayed:
            by_outbox.setdefault(relay.outbox, []).extend(relay.ids)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for outbox, ids in by_outbox.items():
                    pipe.xdel(outbox, *ids)
                await pipe.execute()
        except RedisError as exc:
            self.log.warning("outbox cleanup deferred (%s); the sweeper will finish it", exc)

    # -- side loops ---------------------------------------------------------
    def _renew_interval(self) -> float:
        return max(0.05, self.options.claim_timeout_ms / 3000)

    def _reclaim_interval(self) -> float:
        return min(5.0, max(0.1, self.options.claim_timeout_ms / 2000))

    async def _renew(self) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in list(self._inflight):
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, entry_id in await claims.renew(self.redis, self.group, self.name, by_stream):
            self.log.warning("entry %s of %s was claimed by another consumer", entry_id, stream)

    async def _move_delayed(self) -> None:
        await delayed.move_due(self.redis, self.keys, self.service.name)

    async def _trim_streams(self) -> None:
        calls = [([stream], [self.options.stream_maxlen, 10_000]) for stream in self.streams]
        await _trim.run_many(self.redis, calls)

    async def _relay_outbox(self) -> None:
        await relay_stale(self.redis, self.keys, self.service.name)

    def _expiry_interval(self) -> float:
        """A tenth of the handler timeout (at most a second): handlers end
        within about 10 % past it."""
        return min(1.0, self.options.handler_timeout_ms / 10_000)

    async def _expire_handlers(self) -> None:
        self.dispatcher.expire_overdue()

    def _dedup_interval(self) -> float:
        # A bucket is window / 4 wide: looking twice per bucket keeps at most
        # about one extra bucket past the window.
        return min(30.0, max(0.1, self.options.dedup_window_s / 8))

    async def _collect_dedup(self) -> None:
        window_s = self.options.dedup_window_s
        await dedup.collect(self.redis, self.keys, self.group, self.streams, window_s=window_s)

    async def _every(
        self, interval: Callable[[], float], job: Callable[[], Awaitable[Any]]
    ) -> None:
        """Run ``job`` every ``interval()`` seconds until the consumer stops.

        A Redis error is waited out (and reported by :attr:`waiting_for`);
        anything else is logged, and after ``BROKEN_AFTER`` in a row raised.
        """
        name = getattr(job, "__name__", str(job)).lstrip("_").replace("_", " ")
        broken = 0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                pause = interval() * random.uniform(0.8, 1.2)
                await asyncio.wait_for(self._stopped.wait(), pause)
                return
            try:
                await job()
            except RedisError as exc:
                self._waiting_on(name, exc)
                continue
            except Exception:
                broken += 1
                self.log.exception("%s failed (%d in a row)", name, broken)
                if broken >= BROKEN_AFTER:
                    raise
                continue
            broken = 0
            self._resumed(name)

    def _waiting_on(self, loop: str, exc: RedisError) -> None:
        """Record (and log, now and then) that ``loop`` waits because of ``exc``."""
        reason = waiting_reason(exc)
        previous = self._waiting.get(loop)
        now = time.monotonic()
        if previous is None or now - previous[1] > REPEAT_WARNING_S:
            self.log.warning("%s is waiting: %s", loop, reason)
            self._waiting[loop] = (reason, now)
        else:
            self._waiting[loop] = (reason, previous[1])

    def _resumed(self, loop: str) -> None:
        if self._waiting.pop(loop, None) is not None:
            self.log.warning("%s resumed", loop)

    async def _pause(
        self, loop: str, exc: RedisError, failures: int, *, interruptible: bool = True
    ) -> None:
        """Back off after ``failures`` failed tries in a row (capped at 5 s, jittered)."""
        self._waiting_on(loop, exc)
        delay = _backoff_s(failures)
        if not interruptible:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), delay)

    async def _retrying(
        self, loop: str, job: Callable[[], Awaitable[Any]], stop: asyncio.Event
    ) -> bool:
        """Run ``job`` until it succeeds (True) or ``stop`` is set (False)."""
        failures = 0
        while not stop.is_set():
            try:
                await job()
                self._resumed(loop)
                return True
            except RedisError as exc:
                failures += 1
                self._waiting_on(loop, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _backoff_s(failures))
        return False


def _backoff_s(failures: int) -> float:
    """The pause after ``failures`` failed tries in a row: doubling from 50 ms,
    capped at 5 s, with jitter so that many workers do not retry in step."""
    return min(5.0, 0.05 * 2.0 ** min(failures, 16)) * random.uniform(0.5, 1.0)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
