"""A snapshot of the whole system: what `streamcart status` and the monitor read.

Three pipelined round trips whatever the number of streams: the clock (and, beside
it, the server's durability mode) and the service list; then every service's
instances, counters, dead letters and every stream's group and pending summary; then
the live instances' details.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.registry.clock import redis_now_ms
from streamcart.registry.durability import Durability, read_durability
from streamcart.registry.instances import Instance
from streamcart.resilience.breaker_board import BreakerReport, fresh_reports


class StreamState(msgspec.Struct, kw_only=True):
    stream: str
    length: int = 0
    lag: int | None = None  # entries the group has not been given yet
    pending: int = 0  # given to a consumer, not acknowledged
    oldest_pending_age_ms: int | None = None


class ServiceState(msgspec.Struct, kw_only=True):
    service: str
    alive: int = 0
    dead: int = 0
    handled: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    rate: float = 0.0  # messages handled per second, summed over live instances
    in_flight: int = 0
    dlq: int = 0
    streams: list[StreamState] = msgspec.field(default_factory=list)
    instances: list[Instance] = msgspec.field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(s.lag or 0 for s in self.streams)

    @property
    def pending(self) -> int:
        return sum(s.pending for s in self.streams)

    @property
    def oldest_pending_age_ms(self) -> int | None:
        ages = [
            s.oldest_pending_age_ms for s in self.streams if s.oldest_pending_age_ms is not None
        ]
        return max(ages, default=None)


class Snapshot(msgspec.Struct, kw_only=True):
    at_ms: int
    services: list[ServiceState]
    breakers: list[BreakerReport] = msgspec.field(default_factory=list)
    durability: Durability = msgspec.field(default_factory=Durability)


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class _About(msgspec.Struct):
    """What the registry keeps of a service: its streams and its instances' TTL."""

    streams: list[str]
    ttl_ms: int = 5_000


async def take_snapshot(redis: Redis, keys: Keys) -> Snapshot:
    """The state of every known service, read in four round trips."""
    # Alone, not pipelined: a cluster client pipelines neither TIME nor CONFIG.
    now, durability = await asyncio.gather(redis_now_ms(redis), read_durability(redis))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.services())
        pipe.hgetall(keys.breakers())
        known, breakers = await pipe.execute()
    services = {name: msgspec.json.decode(about, type=_About) for name, about in known.items()}

    async with redis.pipeline(transaction=False) as pipe:
        for name, about in sorted(services.items()):
            pipe.zrange(keys.instances(name), 0, -1, withscores=True)
            pipe.hgetall(keys.stats(name))
            pipe.xlen(keys.dlq(name))
            for stream in about.streams:
                pipe.xlen(stream)
                pipe.xinfo_groups(stream)
                pipe.xpending(stream, name)
        replies = iter(await pipe.execute(raise_on_error=False))

    states: list[ServiceState] = []
    alive: list[tuple[ServiceState, str]] = []
    for name, about in sorted(services.items()):
        members, totals, dlq = next(replies), next(replies), next(replies)
        members = _ok(members, [])
        alive_ids = [member for member, score in members if score >= now - about.ttl_ms]
        totals = _ok(totals, {})
        state = ServiceState(
            service=name,
            alive=len(alive_ids),
            dead=len(members) - len(alive_ids),
            dlq=int(_ok(dlq, 0)),
            handled=int(totals.get("handled", 0)),
            failed=int(totals.get("failed", 0)),
            retried=int(totals.get("retried", 0)),
            dead_lettered=int(totals.get("dead_lettered", 0)),
        )
        for stream in about.streams:
            length, groups, summary = next(replies), next(replies), next(replies)
            state.streams.append(_stream_state(stream, name, now, length, groups, summary))
        alive.extend((state, instance_id) for instance_id in alive_ids)
        states.append(state)

    if alive:
        async with redis.pipeline(transaction=False) as pipe:
            for state, instance_id in alive:
                pipe.hgetall(keys.instance(state.service, instance_id))
            hashes = await pipe.execute()
        for (state, _), fields in zip(alive, hashes, strict=True):
            if fields:
                instance = Instance.from_hash(fields)
                state.instances.append(instance)
                state.rate += instance.rate
                state.in_flight += instance.in_flight
    return Snapshot(
        at_ms=now,
        services=states,
        breakers=fresh_reports(breakers, now),
        durability=durability,
    )


def _ok(reply: Any, default: Any) -> Any:
    """A pipelined reply, or ``default`` where the command failed (no such stream)."""
    return default if isinstance(reply, Exception) or reply is None else reply


def _stream_state(
    stream: str, group: str, now: int, length: Any, groups: Any, summary: Any
) -> StreamState:
    state = StreamState(stream=stream, length=int(_ok(length, 0)))
    for info in _ok(groups, []):
        if info.get("name") == group:
            lag = info.get("lag")
            state.lag = int(lag) if lag is not None else None
    summary = _ok(summary, {})
    state.pending = int(summary.get("pending", 0) or 0)
    if state.pending and summary.get("min"):
        state.oldest_pending_age_ms = max(0, now - _entry_ms(str(summary["min"])))
    return state
