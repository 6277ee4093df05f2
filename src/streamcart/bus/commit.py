"""Committing a handler's effects exactly once.

One script (``commit.lua``) writes the handler's state changes, its emitted
messages (into the service's outbox) and the message's marker in the
service's dedup window (:mod:`streamcart.bus.dedup`), all keys of the
service's own hash slot; a marker that exists already means the
message was applied before, and nothing is written. A script is not rolled
back when a command fails, so it checks the writes before the first one and
sets the marker before them: a commit is applied whole, refused whole, or
(a write failing after the checks) marked done and never applied twice. A
handler that called ``ctx.watch`` gets the same script as the one command of
its ``WATCH``/``MULTI`` transaction, which also fails when a watched key
changed. The outbox is then relayed to the target streams with the consumer's
next acknowledgements; a relay interrupted by a crash is finished by
:func:`relay_stale` (the relayed message keeps its id, so consumers drop a
second copy through their own dedup windows).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError, WatchError

from streamcart.bus import delayed
from streamcart.bus.context import Context, Outgoing
from streamcart.bus.deadletter import dead_letter_fields
from streamcart.bus.dedup import DedupWindow
from streamcart.bus.keys import Keys
from streamcart.bus.rawtext import is_decimal
from streamcart.bus.scripts import Script
from streamcart.bus.server_errors import is_passing
from streamcart.errors import CommitError, WriteConflictError

OUTBOX_STREAM, OUTBOX_DELAY = "outbox_stream", "outbox_delay_ms"
# A view of the dedup buckets is stale at most once per new bucket; twice more is a race.
STALE_TRIES = 3
log = logging.getLogger("streamcart.commit")
_commit = Script("commit.lua")


class Relay:
    """Committed messages waiting in ``outbox`` under ``ids``, to publish and then delete."""

    __slots__ = ("ids", "messages", "outbox")

    def __init__(self, outbox: str, messages: list[Outgoing], ids: list[str]) -> None:
        self.outbox = outbox
        self.messages = messages
        self.ids = ids


async def commit(ctx: Context, dedup: DedupWindow, *, window_s: int) -> Relay | None:
    """Commit ``ctx``'s effects, marking its message in ``dedup`` (see
    :mod:`streamcart.bus.dedup`); ``None`` when it was applied before.

    Returns what is left to relay (see :class:`Relay`).

    Raises:
        WriteConflictError: a key the handler watched changed (or the dedup
            window opened a bucket meanwhile); run it again.
        CommitError: a write cannot succeed (nothing was written), or failed
            after the message was marked done; either way never applied twice.
    """
    outbox = ctx.keys.outbox(ctx.service.name)
    if ctx.pipe is None:
        reply = await _fresh(
            dedup, lambda: _commit(ctx.redis, *_script_call(ctx, outbox, dedup, window_s))
        )
    else:
        reply = await _commit_watched(ctx, outbox, dedup, window_s)
    ids = _outcome(reply)
    if ids is None:
        return None
    return Relay(outbox, ctx.outgoing, ids)


async def _fresh(dedup: DedupWindow, call: Callable[[], Awaitable[Any]]) -> list[Any]:
    """The reply of ``call`` once it ran on a current view of the dedup buckets."""
    for _ in range(STALE_TRIES):
        reply = list(await call())
        if _text(reply[0]) != "stale":
            return reply
        dedup.update(reply[1:])
    raise WriteConflictError("the dedup window kept changing during the commit")


def _script_call(
    ctx: Context, outbox: str, dedup: DedupWindow, window_s: int, *, prepare: bool = False
) -> tuple[list[str], list[Any]]:
    """The keys and arguments of ``commit.lua`` for ``ctx``'s effects (with
    ``prepare``, for its check of the dedup window alone)."""
    dedup_keys, argv = dedup.script_part(ctx.message.id, window_s, prepare=prepare)
    if prepare:
        return [outbox, *dedup_keys], argv
    writes = _raw_commands(ctx)
    keys = [outbox, *dedup_keys, *dict.fromkeys(str(args[1]) for args in writes)]
    argv.append(len(writes))
    for args in writes:
        argv += (len(args), *args)
    for out in ctx.outgoing:
        fields = outbox_fields(out)
        argv.append(len(fields))
        for pair in fields.items():
            argv += pair
    return keys, argv


def _outcome(reply: list[Any]) -> list[str] | None:
    """The outbox ids of a commit, ``None`` for a message applied before.

    Raises:
        CommitError: the script refused the writes, or one failed after the marker.
    """
    status = _text(reply[0])
    if status == "dup":
        return None
    if status == "ok":
        return [_text(entry_id) for entry_id in reply[1:]]
    if status == "refused":
        raise CommitError(f"{_text(reply[2])}; nothing was written")
    raise CommitError(
        f"{_text(reply[2])}; the writes before it stay applied and the message is "
        "marked done, so it is never applied again"
    )


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def outbox_fields(out: Outgoing) -> dict[str, str]:
    """A message as its outbox entry keeps it: where it goes, and its delay."""
    fields = {**out.fields, OUTBOX_STREAM: out.stream}
    if out.delay_ms:
        fields[OUTBOX_DELAY] = str(out.delay_ms)
    return fields


# A standalone client's pipeline builds the same commands whatever client the
# worker uses (a cluster pipeline keeps them in another shape); it never connects.
_RECORDER = Redis(decode_responses=True)


def _raw_commands(ctx: Context) -> list[tuple[Any, ...]]:
    """The handler's writes as Redis commands, built by redis-py as it would send them."""
    ops = ctx.tx.ops
    if not ops:
        return []
    recorder = _RECORDER.pipeline(transaction=False)  # never executed: it only builds commands
    for command, args, kwargs in ops:
        getattr(recorder, command)(*args, **kwargs)
    return [args for args, _ in recorder.command_stack]


async def _commit_watched(
    ctx: Context, outbox: str, dedup: DedupWindow, window_s: int
) -> list[Any]:
    """The commit script inside the handler's ``WATCH``/``MULTI``: one command,
    so EXEC never runs some writes after another one failed. Its dedup check
    runs first outside the transaction, so a new bucket (opened there) does not
    cost the handler a second run."""
    pipe = ctx.pipe
    assert pipe is not None
    try:
        ready = await _fresh(
            dedup, lambda: _commit(pipe, *_script_call(ctx, outbox, dedup, window_s, prepare=True))
        )
        if _text(ready[0]) == "dup":
            return ready
        pipe.multi()
        _commit.queue(pipe, *_script_call(ctx, outbox, dedup, window_s))
        (reply,) = await pipe.execute()
    except WatchError:
        # The handler runs again, and its commit then finds the marker if a
        # twin delivery of this message was the one that committed.
        raise WriteConflictError("a watched key changed while the handler ran") from None
    finally:
        ctx.pipe = None
        await pipe.reset()
    if _text(reply[0]) == "stale":  # a bucket opened in between: rare
        dedup.update(reply[1:])
        raise WriteConflictError("the dedup window opened a new bucket; run it again")
    return list(reply)


async def relay_stale(
    redis: Redis, keys: Keys, service: str, *, older_than_ms: int = 5_000, batch: int = 100
) -> int:
    """Publish outbox entries a crashed worker left behind; returns how many.

    An entry that cannot be published (no target, a target that is not a
    stream) is dead-lettered with the reason and deleted: it never holds up
    the entries behind it, nor makes the good ones go out again. One refused
    for a passing reason (READONLY, NOPERM, TRYAGAIN...) stays for the next
    pass, and that reason is raised once the rest is done.
    """
    outbox = keys.outbox(service)
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    entries = dict(await redis.xrange(outbox, "-", f"{now_ms - older_than_ms}-0", count=batch))
    if not entries:
        return 0
    messages: dict[str, Outgoing] = {}
    failed: dict[str, str] = {}
    for entry_id, original in entries.items():
        fields = dict(original)
        stream = fields.pop(OUTBOX_STREAM, None)
        delay = fields.pop(OUTBOX_DELAY, "0")
        if not stream or not is_decimal(delay):
            failed[entry_id] = "the outbox entry names no target stream or a bad delay"
        else:
            messages[entry_id] = Outgoing(stream, fields, int(delay))
    refused, deferred = await _publish_each(redis, keys, messages)
    failed.update(refused)
    for entry_id, reason in failed.items():
        letter = dead_letter_fields(
            entries[entry_id],
            error=f"RelayError: {reason}",
            attempts=0,
            stream=messages[entry_id].stream if entry_id in messages else outbox,
            entry_id=entry_id,
            service=service,
            at_ms=now_ms,
        )
        await redis.xadd(keys.dlq(service), letter)
    done = [entry_id for entry_id in entries if entry_id not in deferred]
    if done:
        await redis.xdel(outbox, *done)
    if deferred:
        raise next(iter(deferred.values()))
    return len(done) - len(failed)


async def _publish_each(
    redis: Redis, keys: Keys, messages: dict[str, Outgoing]
) -> tuple[dict[str, str], dict[str, ResponseError]]:
    """Publish ``messages`` (by outbox id): the ids refused for their own sake
    (with the error), and those refused for a passing reason, to try again."""
    refused: dict[str, str] = {}
    deferred: dict[str, ResponseError] = {}

    def failed(entry_id: str, exc: ResponseError) -> None:
        if is_passing(exc):
            deferred[entry_id] = exc
        else:
            refused[entry_id] = str(exc)

    immediate = {eid: out for eid, out in messages.items() if not out.delay_ms}
    if immediate:
        async with redis.pipeline(transaction=False) as pipe:
            for out in immediate.values():
                pipe.xadd(out.stream, out.fields)
            results = await pipe.execute(raise_on_error=False)
        for entry_id, result in zip(immediate, results, strict=True):
            if isinstance(result, ResponseError):
                failed(entry_id, result)
            elif isinstance(result, Exception):
                raise result  # Redis itself failed: try the whole batch again later
    for entry_id, out in messages.items():
        if out.delay_ms:
            try:
                await delayed.schedule(redis, keys, out.stream, out.fields, out.delay_ms)
            except ResponseError as exc:
                failed(entry_id, exc)
    return refused, deferred


async def schedule_delayed(redis: Redis, keys: Keys, messages: list[Outgoing]) -> None:
    """Put the delayed ones among ``messages`` into their streams' delayed sets."""
    for out in messages:
        if out.delay_ms:
            await delayed.schedule(redis, keys, out.stream, out.fields, out.delay_ms)
