"""The counter: the smallest service with state, events and failure modes.

``counter.increment`` adds to a named counter and emits ``counter.incremented``;
``counter.noop`` does nothing (the benchmark's handler); ``counter.fail``
raises until the config flag ``fixed`` is set, to show retries and replay.
"""

from __future__ import annotations

import asyncio

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import TransientError


class Increment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    by: int = 1
    sleep_ms: int = 0


class Fail(msgspec.Struct, frozen=True):
    name: str


def build(options: ServiceOptions | None = None) -> Service:
    service = Service("counter", options=options)

    @service.on("counter.increment")
    async def increment(msg: Increment, ctx: Context) -> None:
        if msg.sleep_ms:
            await asyncio.sleep(msg.sleep_ms / 1000)
        ctx.tx.hincrby(ctx.key("counts"), msg.name, msg.by)
        ctx.tx.hincrby(ctx.key("applied"), ctx.message.id, 1)
        ctx.publish("counter.incremented", {"name": msg.name, "by": msg.by}, key=msg.name)

    @service.on("counter.noop")
    async def noop(msg: dict[str, object], ctx: Context) -> None:
        return None

    @service.on("counter.fail")
    async def fail(msg: Fail, ctx: Context) -> None:
        if not await ctx.redis.hget(ctx.key("fixed"), msg.name):
            raise TransientError(f"counter {msg.name!r} is broken until it is fixed")
        ctx.tx.hincrby(ctx.key("counts"), msg.name, 1)

    return service
