"""The status snapshot against a known state."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from fakeredis import FakeAsyncRedis

from streamcart.registry import Instance, Registry
from streamcart.registry.durability import durability_of
from streamcart.registry.report import as_data, durability_line, table
from streamcart.registry.status import Snapshot, take_snapshot
from tests.unit.support import KEYS

INBOX, EVENTS = KEYS.inbox("orders"), KEYS.events("payment")


def instance(instance_id: str, rate: float, in_flight: int) -> Instance:
    return Instance(
        service="orders", instance_id=instance_id, consumer=instance_id.split(".")[0],
        host="h", pid=7, version="1", started_at=1, concurrency=8,
        streams=[INBOX, EVENTS], rate=rate, in_flight=in_flight,
    )  # fmt: skip


async def test_a_snapshot_reports_instances_counters_lag_pending_and_dead_letters(
    fake_redis: FakeAsyncRedis,
) -> None:
    registry = Registry(fake_redis, KEYS, ttl_ms=300)
    await registry.heartbeat(instance("h-9.old", 0, 0))
    await asyncio.sleep(0.35)  # h-9 goes silent: dead
    await registry.heartbeat(instance("h-0.a", 12.5, 3), {"handled": 40, "failed": 2})
    await registry.heartbeat(instance("h-1.b", 7.5, 1), {"handled": 10, "dead_lettered": 1})
    for stream in (INBOX, EVENTS):
        await fake_redis.xgroup_create(stream, "orders", id="0", mkstream=True)
    for i in range(10):
        await fake_redis.xadd(INBOX, {"n": str(i)})
    await fake_redis.xreadgroup("orders", "h-0", {INBOX: ">"}, count=4)  # 4 pending, 6 lag
    await fake_redis.xadd(KEYS.dlq("orders"), {"type": "orders.place", "data": "{}"})

    snapshot = await take_snapshot(fake_redis, KEYS)
    [orders] = snapshot.services
    assert (orders.service, orders.alive, orders.dead) == ("orders", 2, 1)
    assert (orders.handled, orders.failed, orders.dead_lettered) == (50, 2, 1)
    assert orders.rate == 20.0 and orders.in_flight == 4
    assert orders.dlq == 1
    inbox, events = orders.streams
    assert (inbox.stream, inbox.length, inbox.pending) == (INBOX, 10, 4)
    assert inbox.oldest_pending_age_ms is not None and inbox.oldest_pending_age_ms >= 0
    assert (events.length, events.pending, events.oldest_pending_age_ms) == (0, 0, None)
    assert orders.pending == 4
    assert sorted(i.instance_id for i in orders.instances) == ["h-0.a", "h-1.b"]

    data = as_data(snapshot)
    assert data["services"][0]["pending"] == 4
    assert table(snapshot).row_count == 1


async def test_a_snapshot_of_an_empty_namespace_says_how_to_start(
    fake_redis: FakeAsyncRedis,
) -> None:
    snapshot = await take_snapshot(fake_redis, KEYS)
    assert snapshot.services == []
    assert "streamcart worker" in str(table(snapshot).caption)


async def test_breaker_reports_show_in_the_snapshot_until_they_go_stale(
    fake_redis: FakeAsyncRedis,
) -> None:
    from streamcart.registry.report import breaker_table
    from streamcart.resilience.breaker import CircuitBreaker
    from streamcart.resilience.breaker_board import STALE_MS, publish

    breaker = CircuitBreaker("payments")
    for _ in range(10):
        breaker.record_failure()
    await publish(fake_redis, KEYS, "gateway@h:1", [breaker.snapshot()])
    await fake_redis.hset(KEYS.breakers(), "junk", "not json")
    snapshot = await take_snapshot(fake_redis, KEYS)
    [report] = snapshot.breakers
    assert (report.owner, report.breaker.target, report.breaker.state) == (
        "gateway@h:1", "payments", "open",
    )  # fmt: skip
    assert breaker_table(snapshot) is not None
    assert as_data(snapshot)["breakers"][0]["breaker"]["state"] == "open"

    stale = msgspec.json.encode(
        msgspec.structs.replace(report, reported_at_ms=report.reported_at_ms - STALE_MS - 1)
    )
    await fake_redis.hset(KEYS.breakers(), "gateway@h:1/payments", stale)
    assert (await take_snapshot(fake_redis, KEYS)).breakers == []


@pytest.mark.parametrize(
    ("config", "mode"),
    [
        ({"appendonly": "yes", "appendfsync": "always"}, "always"),
        ({"appendonly": "yes", "appendfsync": "everysec"}, "everysec"),
        ({"appendonly": "no", "appendfsync": "always"}, "off"),
        ({}, "unknown"),
    ],
)
def test_the_durability_mode_is_what_the_servers_config_says(
    config: dict[str, str], mode: str
) -> None:
    durability = durability_of(config)
    assert durability.mode == mode
    snapshot = Snapshot(at_ms=0, services=[], durability=durability)
    assert as_data(snapshot)["durability"]["mode"] == mode
    assert durability_line(snapshot).plain.startswith(f"durability: {mode} (")


async def test_a_server_that_refuses_config_has_an_unknown_durability(
    fake_redis: FakeAsyncRedis,
) -> None:
    # fakeredis knows no CONFIG: it answers as a server with CONFIG renamed away would.
    snapshot = await take_snapshot(fake_redis, KEYS)
    assert as_data(snapshot)["durability"] == {
        "mode": "unknown",
        "appendonly": None,
        "appendfsync": None,
        "meaning": "the server refuses CONFIG GET appendonly/appendfsync",
    }
