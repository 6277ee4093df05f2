"""The health monitor: turns status snapshots into alerts.

Each check compares a fresh snapshot (and the previous one) with thresholds
from the config store. A condition that starts is announced once as a firing
``system.alert`` event (severity ``warning`` or ``critical``); when it clears,
a ``resolved`` one follows. Alerts also go to the log and, when configured,
to a webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Publisher
from streamcart.bus.service import Service
from streamcart.config.resolve import effective
from streamcart.config.store import ConfigStore
from streamcart.registry.status import ServiceState, Snapshot, take_snapshot
from streamcart.registry.webhook import webhook_sender

log = logging.getLogger("streamcart.monitor")
MONITOR_SCOPE = "monitor"


class Thresholds(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When to alert; kept in the config store under the ``monitor`` scope."""

    interval_s: float = 5.0
    lag: int = 1_000  # entries not yet delivered to a group
    pending: int = 1_000  # delivered, not acknowledged
    oldest_pending_ms: int = 60_000
    dlq_growth: int = 1  # new dead letters between two checks
    error_rate: float = 0.5  # failed / (handled + failed) between two checks ...
    min_errors: int = 5  # ... once at least this many failed
    webhook_url: str = ""
    webhook_attempts: int = 3


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    kind: str
    severity: str
    reason: str
    value: float
    threshold: float
    state: str = "firing"

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.kind)


def evaluate(previous: Snapshot | None, current: Snapshot, limits: Thresholds) -> list[Alert]:
    """Every condition that holds now (a pure function of two snapshots)."""
    before = {s.service: s for s in previous.services} if previous else {}
    alerts: list[Alert] = []
    for state in current.services:
        alerts.extend(_service_alerts(before.get(state.service), state, limits))
    return alerts


def _service_alerts(old: ServiceState | None, new: ServiceState, limits: Thresholds) -> list[Alert]:
    name = new.service
    found: list[Alert] = []

    def alert(kind: str, severity: str, reason: str, value: float, threshold: float) -> None:
        found.append(Alert(service=name, kind=kind, severity=severity, reason=reason,
                           value=value, threshold=threshold))  # fmt: skip

    if new.alive == 0 and (new.lag or new.pending or (old is not None and old.alive)):
        alert("no_instance", "critical", f"{name} has no live instance", 0, 1)
    if new.dead:
        alert("instance_dead", "warning", f"{new.dead} instance(s) of {name} stopped heartbeating",
              new.dead, 0)  # fmt: skip
    if new.lag > limits.lag:
        alert("lag", "warning", f"{name} is {new.lag} entries behind", new.lag, limits.lag)
    if new.pending > limits.pending:
        alert("pending", "warning", f"{name} has {new.pending} unacknowledged entries",
              new.pending, limits.pending)  # fmt: skip
    age = new.oldest_pending_age_ms
    if age is not None and age > limits.oldest_pending_ms:
        alert("oldest_pending", "warning", f"{name}'s oldest pending entry is {age // 1000} s old",
              age, limits.oldest_pending_ms)  # fmt: skip
    if old is not None:
        growth = new.dead_lettered - old.dead_lettered
        if growth >= limits.dlq_growth > 0:
            alert("dlq_growth", "warning", f"{growth} new dead letters in {name}", growth,
                  limits.dlq_growth)  # fmt: skip
        failed = new.failed - old.failed
        tries = failed + new.handled - old.handled
        if failed >= limits.min_errors and tries and failed / tries > limits.error_rate:
            rate = failed / tries
            alert("error_rate", "critical", f"{name}'s handlers fail {rate:.0%} of the time",
                  rate, limits.error_rate)  # fmt: skip
    return found


Sender = Callable[[str, bytes, int], Awaitable[None]]  # url, JSON body, attempts


class Monitor:
    """Checks the system every ``interval_s`` and announces alert transitions."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        load_thresholds: Callable[[], Awaitable[Thresholds]],
        send_webhook: Sender | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.publisher = Publisher(redis, keys)
        self.load_thresholds = load_thresholds
        self.send_webhook = send_webhook
        self.previous: Snapshot | None = None
        self.firing: dict[tuple[str, str], Alert] = {}

    async def check(self) -> list[Alert]:
        """One round: returns the alerts that started or cleared."""
        limits = await self.load_thresholds()
        snapshot = await take_snapshot(self.redis, self.keys)
        now = {alert.key: alert for alert in evaluate(self.previous, snapshot, limits)}
        self.previous = snapshot
        changes = [alert for key, alert in now.items() if key not in self.firing]
        changes += [
            msgspec.structs.replace(alert, state="resolved", severity="info")
            for key, alert in self.firing.items()
            if key not in now
        ]
        self.firing = now
        for alert in changes:
            await self._announce(alert, limits)
        return changes

    async def run(self, stop: asyncio.Event) -> None:
        """Check until ``stop`` is set; a failed check is logged and retried."""
        while not stop.is_set():
            interval = 5.0
            try:
                interval = (await self.load_thresholds()).interval_s
                await self.check()
            except RedisError as exc:
                log.warning("health check failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def _announce(self, alert: Alert, limits: Thresholds) -> None:
        level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(alert.severity, 20)
        log.log(level, "alert %s %s/%s: %s", alert.state, alert.service, alert.kind, alert.reason)
        await self.publisher.publish("system.alert", alert, key=alert.service)
        if limits.webhook_url and self.send_webhook is not None:
            body = msgspec.json.encode({"type": "system.alert", "alert": alert})
            try:
                await self.send_webhook(limits.webhook_url, body, limits.webhook_attempts)
            except Exception as exc:  # the alert is in the stream and the log already
                log.warning("webhook %s failed: %s", limits.webhook_url, exc)


def monitor_scope() -> Service:
    """The monitor's place in the config store: the ``monitor`` scope, whose
    keys are the fields of :class:`Thresholds` (``streamcart config set
    monitor lag 500``)."""
    return Service(MONITOR_SCOPE, settings=Thresholds)


def thresholds_loader(store: ConfigStore) -> Callable[[], Awaitable[Thresholds]]:
    """Reads the thresholds afresh on each check, so changes apply at once; a
    bad stored value is logged and its default used."""
    scope = monitor_scope()

    def skip(error: Exception) -> None:
        log.warning("ignoring monitor config: %s", error)

    async def load() -> Thresholds:
        values = await store.list(MONITOR_SCOPE)
        _, settings = effective(scope, {}, values, on_invalid=skip)
        return cast(Thresholds, settings)  # the monitor scope declares Thresholds

    return load


async def run_monitor(redis: Redis, keys: Keys, stop: asyncio.Event) -> None:
    """The monitor as `streamcart monitor` and `streamcart up` run it."""
    monitor = Monitor(
        redis,
        keys,
        load_thresholds=thresholds_loader(ConfigStore(redis, keys)),
        send_webhook=webhook_sender(),
    )
    log.info("health monitor watching namespace %s", keys.namespace)
    await monitor.run(stop)
