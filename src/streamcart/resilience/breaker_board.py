"""Where breakers report their state, so `streamcart status` can show them.

Each process that runs breakers (gateway, workers) writes its snapshots into
one hash, a field per ``<owner>/<target>``, with the Redis time of the report;
readers ignore reports older than ``STALE_MS`` (their process is gone).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.resilience.breaker import BreakerState

STALE_MS = 30_000


class BreakerReport(msgspec.Struct, frozen=True, kw_only=True):
    owner: str  # the process that runs the breaker (e.g. "gateway@host:pid")
    reported_at_ms: int
    breaker: BreakerState


async def publish(redis: Redis, keys: Keys, owner: str, states: Iterable[BreakerState]) -> None:
    """Record ``owner``'s breaker states (one round trip after the clock)."""
    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    fields = {
        f"{owner}/{state.target}": msgspec.json.encode(
            BreakerReport(owner=owner, reported_at_ms=now, breaker=state)
        )
        for state in states
    }
    if fields:
        await redis.hset(keys.breakers(), mapping=fields)


def fresh_reports(raw: dict[str, str], now_ms: int) -> list[BreakerReport]:
    """The reports of ``HGETALL <breakers>`` that are recent enough to believe."""
    reports = []
    for value in raw.values():
        try:
            report = msgspec.json.decode(value, type=BreakerReport)
        except msgspec.DecodeError:
            continue  # a hand-written or older-format field: not ours to trust
        if now_ms - report.reported_at_ms <= STALE_MS:
            reports.append(report)
    return sorted(reports, key=lambda r: (r.breaker.target, r.owner))
