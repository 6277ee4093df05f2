"""Hot reload: a worker companion that keeps the consumer's config current.

It loads the effective config at start, then reloads whenever the config
version moves. Pub/sub on the config channel makes that immediate, but a
message published while the worker was disconnected is gone for good
(PITFALLS 12), so the version is also polled every ``POLL_S`` seconds: a
worker converges within a second whatever it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamcart.bus.options import ServiceOptions
from streamcart.bus.worker import WorkerRuntime
from streamcart.config.resolve import effective
from streamcart.config.store import GLOBAL, ConfigStore
from streamcart.errors import InvalidConfigError

log = logging.getLogger("streamcart.config")

POLL_S = 0.5
# Headroom the blocking read keeps below the connection's socket timeout (PITFALLS 10).
_BLOCK_MARGIN_S = 1.0


async def config_watcher(runtime: WorkerRuntime) -> None:
    """Apply config changes to ``runtime.consumer`` until cancelled or stopped."""
    await watch_config(runtime)


async def watch_config(runtime: WorkerRuntime, *, poll_s: float = POLL_S) -> None:
    """:func:`config_watcher` with its poll interval as a parameter.

    A failure (Redis away, a value that does not fit its type) is logged and
    the watcher goes on; the consumer keeps its last good config meanwhile.
    """
    reloader = Reloader(runtime)
    wake = asyncio.Event()
    channel = runtime.keys.config_channel()
    listener = asyncio.create_task(_listen(runtime.redis, channel, wake, runtime.stop))
    try:
        while not runtime.stop.is_set():
            try:
                await reloader.check()
            except (RedisError, OSError) as exc:
                log.debug("config check failed: %s", exc)
            except Exception:
                log.exception("config reload failed; keeping the current config")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)
            wake.clear()
    finally:
        listener.cancel()
        await asyncio.wait([listener], timeout=2.0)


class Reloader:
    """Loads the config of one worker's service and applies what changed."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self.store = ConfigStore(runtime.redis, runtime.keys)
        self.version: int | None = None

    async def check(self) -> bool:
        """Reload if the version moved since the last load; whether it did."""
        if self.version is not None and await self.store.version() == self.version:
            return False
        await self.reload()
        return True

    async def reload(self) -> None:
        """Read both scopes in one transaction and apply the effective config."""
        service = self.runtime.service
        snapshot = await self.store.snapshot(GLOBAL, service.name)
        options, settings = effective(
            service,
            snapshot.scopes[GLOBAL],
            snapshot.scopes[service.name],
            on_invalid=_skip,
        )
        consumer = self.runtime.consumer
        options = _keep_block_below_timeout(options, consumer.options, self.runtime.redis)
        changes = _diff(consumer.options, options) + _diff(consumer.settings, settings)
        consumer.apply_options(options)
        consumer.apply_settings(settings)
        if changes:
            log.info(
                "%s config version %d applied: %s",
                service.name,
                snapshot.version,
                ", ".join(changes),
            )
        self.version = consumer.config_version = snapshot.version


async def _listen(redis: Redis, channel: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Set ``wake`` on every announcement; resubscribe after a connection loss.

    It also watches ``stop``: a cancellation that lands inside a Redis call can
    be swallowed, and the worker must not wait for this loop on its way out.
    """
    failures = 0
    while not stop.is_set():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            wake.set()  # whatever was announced while unsubscribed, check now
            failures = 0
            while not stop.is_set():
                if await pubsub.get_message(timeout=1.0) is not None:
                    wake.set()
        except (RedisError, OSError) as exc:
            failures += 1
            log.debug("config channel lost (%s); resubscribing", exc)
            await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 16)))
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()


def _skip(error: InvalidConfigError) -> None:
    log.warning("ignoring a stored config value: %s", error)


def _keep_block_below_timeout(
    options: ServiceOptions, current: ServiceOptions, redis: Redis
) -> ServiceOptions:
    """Keep ``block_ms`` under the socket timeout the connection was opened
    with: a longer blocking read would time out as if Redis were gone."""
    timeout = redis.get_connection_kwargs().get("socket_timeout")
    if timeout is None or options.block_ms / 1000 + _BLOCK_MARGIN_S <= timeout:
        return options
    log.warning(
        "block_ms=%d refused: reads would outlast the connection's socket timeout (%ss); "
        "keeping %d",
        options.block_ms,
        timeout,
        current.block_ms,
    )
    return msgspec.structs.replace(options, block_ms=current.block_ms)


def _diff(old: Any, new: Any) -> list[str]:
    if old is None or new is None or old == new:
        return []
    before, after = msgspec.structs.asdict(old), msgspec.structs.asdict(new)
    return [
        f"{key} {before[key]!r} -> {after[key]!r}" for key in after if after[key] != before[key]
    ]
