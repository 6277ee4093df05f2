"""Committing a handler's effects exactly once.

One ``MULTI`` block writes the handler's state changes, its emitted messages
(into the service's outbox) and the message's ``done`` marker, all keys of the
service's own hash slot. ``WATCH`` on the marker makes a second commit of the
same message fail: a redelivered message, or a worker that was paused while
another instance finished its message, applies nothing twice. The outbox is
then relayed to the target streams; a relay interrupted by a crash is finished
by :func:`relay_stale` (the relayed message keeps its id, so consumers drop a
second copy through their own ``done`` markers).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from streamcart.bus.context import Context, Outgoing
from streamcart.bus.keys import Keys
from streamcart.errors import WriteConflictError

OUTBOX_STREAM = "outbox_stream"
log = logging.getLogger("streamcart.commit")


async def commit(ctx: Context, *, done_ttl_s: int) -> bool:
    """Commit ``ctx``'s effects; ``False`` when this message was applied before.

    Raises:
        WriteConflictError: a key the handler watched changed; run it again.
    """
    outbox = ctx.keys.outbox(ctx.service.name)
    ops = ctx.tx.ops
    pipe = ctx.pipe or ctx.redis.pipeline(transaction=True)
    try:
        if ctx.pipe is None:
            await pipe.watch(ctx.done_key)
        if await pipe.exists(ctx.done_key):
            return False
        pipe.multi()
        for command, args, kwargs in ops:
            getattr(pipe, command)(*args, **kwargs)
        for out in ctx.outgoing:
            pipe.xadd(outbox, {**out.fields, OUTBOX_STREAM: out.stream})
        pipe.set(ctx.done_key, "1", ex=done_ttl_s)
        results = await pipe.execute()
    except WatchError:
        if await ctx.redis.exists(ctx.done_key):
            return False
        raise WriteConflictError("a watched key changed while the handler ran") from None
    finally:
        ctx.pipe = None
        await pipe.reset()
    outbox_ids = results[len(ops) : len(ops) + len(ctx.outgoing)]
    await _relay(ctx.redis, outbox, ctx.outgoing, outbox_ids)
    return True


async def _relay(redis: Redis, outbox: str, outgoing: Sequence[Outgoing], ids: list[str]) -> None:
    if not outgoing:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for out in outgoing:
                pipe.xadd(out.stream, out.fields)
            pipe.xdel(outbox, *ids)
            await pipe.execute()
    except RedisError as exc:
        # Committed already: the outbox keeps the messages until relay_stale runs.
        log.warning("outbox relay deferred (%s); the sweeper will publish it", exc)


async def relay_stale(
    redis: Redis, keys: Keys, service: str, *, older_than_ms: int = 5_000, batch: int = 100
) -> int:
    """Publish outbox entries a crashed worker left behind; returns how many."""
    outbox = keys.outbox(service)
    seconds, micros = await redis.time()
    cutoff = seconds * 1000 + micros // 1000 - older_than_ms
    entries = await redis.xrange(outbox, "-", f"{cutoff}-0", count=batch)
    if not entries:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for _, fields in entries:
            stream = fields.pop(OUTBOX_STREAM)
            pipe.xadd(stream, fields)
        pipe.xdel(outbox, *(entry_id for entry_id, _ in entries))
        await pipe.execute()
    return len(entries)
