"""The health monitor: conditions, transitions, events and the webhook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import msgspec
import pytest
from fakeredis import FakeAsyncRedis

from streamcart.registry.health import Monitor, Thresholds, evaluate
from streamcart.registry.instances import Instance, Registry
from streamcart.registry.status import ServiceState, Snapshot, StreamState
from streamcart.registry.webhook import webhook_sender
from tests.unit.support import KEYS
from tests.webhook import Receiver, webhook

LIMITS = Thresholds(lag=100, pending=50, oldest_pending_ms=10_000, dlq_growth=1, min_errors=3)


def snap(**fields: object) -> Snapshot:
    return Snapshot(
        at_ms=0, services=[msgspec.convert({"service": "orders", **fields}, ServiceState)]
    )


def kinds(alerts: list[object]) -> set[str]:
    return {a.kind for a in alerts}  # type: ignore[attr-defined]


def test_a_healthy_service_raises_nothing() -> None:
    healthy = snap(alive=2, handled=100, failed=1)
    assert evaluate(healthy, snap(alive=2, handled=200, failed=2), LIMITS) == []


def test_each_threshold_raises_its_alert() -> None:
    stream = StreamState(stream="s", lag=101, pending=51, oldest_pending_age_ms=10_001)
    now = snap(alive=1, dead=1, streams=[msgspec.to_builtins(stream)], dead_lettered=3,
               handled=10, failed=20)  # fmt: skip
    before = snap(alive=2, handled=8, failed=10, dead_lettered=1)
    alerts = evaluate(before, now, LIMITS)
    assert kinds(alerts) == {"instance_dead", "lag", "pending", "oldest_pending", "dlq_growth",
                             "error_rate"}  # fmt: skip
    [rate] = [a for a in alerts if a.kind == "error_rate"]
    assert rate.severity == "critical" and rate.value == pytest.approx(10 / 12)


def test_losing_every_instance_is_critical() -> None:
    [alert] = evaluate(snap(alive=1), snap(alive=0), LIMITS)
    assert (alert.kind, alert.severity) == ("no_instance", "critical")


def test_few_errors_do_not_count_as_a_rate() -> None:
    assert evaluate(snap(alive=1, failed=0), snap(alive=1, failed=2), LIMITS) == []


async def test_alerts_are_announced_once_then_resolved(fake_redis: FakeAsyncRedis) -> None:
    registry = Registry(fake_redis, KEYS)
    await registry.heartbeat(_instance())
    stream = KEYS.inbox("orders")
    await fake_redis.xgroup_create(stream, "orders", id="0", mkstream=True)
    monitor = Monitor(fake_redis, KEYS, load_thresholds=_limits(Thresholds(lag=5, pending=5)))
    assert await monitor.check() == []
    for i in range(8):
        await fake_redis.xadd(stream, {"n": str(i)})
    await registry.heartbeat(_instance())
    [fired] = await monitor.check()
    assert (fired.kind, fired.state) == ("lag", "firing")
    assert await monitor.check() == []  # still firing: not announced again
    await fake_redis.xreadgroup("orders", "c", {stream: ">"})
    entries = await fake_redis.xrange(stream)
    await fake_redis.xack(stream, "orders", *(entry_id for entry_id, _ in entries))
    [resolved] = await monitor.check()
    assert (resolved.kind, resolved.state, resolved.severity) == ("lag", "resolved", "info")
    events = [json.loads(f["data"]) for _, f in await fake_redis.xrange(KEYS.events("system"))]
    alerts = [e for e in events if e.get("kind") == "lag"]
    assert [a["state"] for a in alerts] == ["firing", "resolved"]


def _instance() -> Instance:
    return Instance(
        service="orders", instance_id="h-0.a", consumer="h-0", host="h", pid=1,
        version="1", started_at=0, concurrency=1, streams=[KEYS.inbox("orders")],
    )  # fmt: skip


def _limits(limits: Thresholds):  # type: ignore[no-untyped-def]
    async def load() -> Thresholds:
        return limits

    return load


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with webhook(fail_first=2) as receiver:
        yield receiver


async def test_alerts_reach_the_webhook_through_failures(
    fake_redis: FakeAsyncRedis, hook: Receiver
) -> None:
    limits = Thresholds(webhook_url=hook.url, webhook_attempts=3)
    monitor = Monitor(fake_redis, KEYS, load_thresholds=_limits(limits),
                      send_webhook=webhook_sender(first_wait_s=0.01))  # fmt: skip
    await Registry(fake_redis, KEYS, ttl_ms=100).heartbeat(_instance())
    await monitor.check()
    await asyncio.sleep(0.15)  # the only instance goes silent
    alerts = await monitor.check()
    assert kinds(alerts) == {"instance_dead", "no_instance"}
    # The first post met two 500s and got through on its third try.
    posted = {body["alert"]["kind"] for body in hook.received}  # type: ignore[index]
    assert posted == {"instance_dead", "no_instance"} and len(hook.received) == 2
    assert hook.fail_first == 0  # both 500s were met and retried through
