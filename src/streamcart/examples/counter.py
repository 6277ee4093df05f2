"""The counter: the smallest service with state, events and failure modes.

``counter.increment`` adds to a named counter and emits ``counter.incremented``;
``counter.get`` answers a request with the count (``counter.get_via`` asks it
through a nested call);
``counter.noop`` does nothing (the benchmark's handler); ``counter.fail``
raises until the config flag ``fixed`` is set, to show retries and replay.
"""

from __future__ import annotations

import asyncio

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import NotFoundError, TransientError


class Increment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    by: int = 1
    sleep_ms: int = 0


class Fail(msgspec.Struct, frozen=True):
    name: str


class Get(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    sleep_ms: int = 0


class Count(msgspec.Struct, frozen=True):
    name: str
    count: int


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

    @service.on("counter.get")
    async def get(msg: Get, ctx: Context) -> Count:
        """A request: the reply is the counter, or a not-found error."""
        if msg.sleep_ms:
            await asyncio.sleep(msg.sleep_ms / 1000)
        value = await ctx.redis.hget(ctx.key("counts"), msg.name)
        if value is None:
            raise NotFoundError(f"no counter named {msg.name!r}")
        return Count(msg.name, int(value))

    @service.on("counter.get_via")
    async def get_via(msg: Get, ctx: Context) -> Count:
        """A request that asks another (here: the same) service, within its own deadline."""
        reply: Count = await ctx.call("counter.get", msg, timeout=30, response_type=Count)
        return reply

    return service
