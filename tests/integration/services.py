"""Service factories that worker subprocesses load as ``tests.integration.services:<name>``.

Small timeouts keep the chaos tests fast: a dead worker's entries are reclaimed
after a second or two instead of the default thirty.
"""

from __future__ import annotations

import asyncio

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.examples import counter

FAST_OPTIONS = ServiceOptions(
    claim_timeout_ms=1500,
    block_ms=200,
    max_attempts=3,
    retry_initial_ms=50,
    inline_attempts=2,
    shutdown_grace_s=5.0,
)
# The long-handler tests: the handler runs three times longer than the claim timeout.
SLOW_OPTIONS = ServiceOptions(claim_timeout_ms=1000, block_ms=200, shutdown_grace_s=10.0)
SLOW_HANDLER_MS = 3000


def fast_counter() -> Service:
    """The example counter with short claim, block and retry times."""
    return counter.build(FAST_OPTIONS)


class Work(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    sleep_ms: int = SLOW_HANDLER_MS


def slow() -> Service:
    """A service whose handler outlives the claim timeout and counts its own runs.

    ``started`` and ``finished`` are written directly (outside the commit), so they
    record every run of the handler, including one whose commit is later rejected.
    """
    service = Service("slow", options=SLOW_OPTIONS)

    @service.on("slow.work")
    async def work(msg: Work, ctx: Context) -> None:
        await ctx.redis.hincrby(ctx.key("started"), ctx.message.id, 1)
        await asyncio.sleep(msg.sleep_ms / 1000)
        await ctx.redis.hincrby(ctx.key("finished"), ctx.message.id, 1)
        ctx.tx.hincrby(ctx.key("counts"), msg.name, 1)
        ctx.tx.hincrby(ctx.key("applied"), ctx.message.id, 1)

    return service


# Takeover tests: the claim timeout is far longer than the test, so only the
# registry (an instance silent for 2 s is dead) can hand a dead worker's entries over.
REGISTRY_OPTIONS = ServiceOptions(
    claim_timeout_ms=120_000, block_ms=200, heartbeat_ms=300, instance_ttl_ms=2_000
)


def registry_counter() -> Service:
    """The counter whose dead instances are noticed by heartbeat, not by idle time."""
    return counter.build(REGISTRY_OPTIONS)


def welcome() -> Service:
    """Greets each new user: one RPC to the counter and one command to it, so a
    registration through the gateway fans out over calls and events."""
    service = Service("welcome", options=FAST_OPTIONS)

    @service.on("user.registered")
    async def greet(msg: dict[str, object], ctx: Context) -> None:
        await ctx.call("counter.noop", {}, timeout=10)
        ctx.send("counter", "counter.increment", {"name": "welcomed"})

    return service


class Probe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    n: int


def listener() -> Service:
    """The counter, also listening to the ``probe`` topic: hostile entries reach
    it both ways (its inbox and a topic it shares with other groups)."""
    service = counter.build(FAST_OPTIONS)

    @service.on("probe.seen")
    async def seen(msg: Probe, ctx: Context) -> None:
        ctx.tx.hincrby(ctx.key("applied"), ctx.message.id, 1)

    return service
