"""The gateway's live settings: the ``gateway`` scope of the config store.

``streamcart config set gateway rate 50`` changes every client's request
budget on every running gateway within about a second, without a restart:
the settings are re-read whenever the config version moves, checked at most
every ``POLL_S`` seconds (one GET), so a request never waits on more. So do
``trusted_proxies`` (``streamcart config set gateway trusted_proxies
'["10.0.0.0/8"]'``: whose ``X-Forwarded-For`` is believed) and the login
limits, per account and per client address.
"""

from __future__ import annotations

import logging
import time

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamcart.bus.keys import Keys
from streamcart.bus.service import Service
from streamcart.config.resolve import effective
from streamcart.config.store import ConfigStore
from streamcart.gateway.client_address import trusted_networks
from streamcart.resilience.ratelimit import RateLimit

log = logging.getLogger("streamcart.gateway")
GATEWAY_SCOPE = "gateway"
POLL_S = 0.5


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Knobs of the HTTP edge."""

    rate: float = 20.0  # requests per second each client earns
    burst: int = 40  # requests a client may make at once
    # The proxies (CIDRs) whose X-Forwarded-For is believed, read right to left.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    # Login attempts: per account (the email, normalized) and per client address.
    login_account_rate: float = 0.1
    login_account_burst: int = 10
    login_address_rate: float = 1.0
    login_address_burst: int = 30

    def __post_init__(self) -> None:
        # Building each limit and the networks runs their checks, with their messages.
        _ = (self.limit, self.login_per_account, self.login_per_address)
        trusted_networks(self.trusted_proxies)

    @property
    def limit(self) -> RateLimit:
        return RateLimit(rate=self.rate, burst=self.burst)

    @property
    def login_per_account(self) -> RateLimit:
        return RateLimit(rate=self.login_account_rate, burst=self.login_account_burst)

    @property
    def login_per_address(self) -> RateLimit:
        return RateLimit(rate=self.login_address_rate, burst=self.login_address_burst)


def gateway_scope() -> Service:
    """The gateway's place in the config store, for validation by `streamcart config`."""
    return Service(GATEWAY_SCOPE, settings=GatewaySettings)


class LiveSettings:
    """The current :class:`GatewaySettings`, following the config store."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.store = ConfigStore(redis, keys)
        self.settings = GatewaySettings()
        self._version: int | None = None
        self._checked = 0.0

    async def current(self) -> GatewaySettings:
        now = time.monotonic()
        if now - self._checked < POLL_S:
            return self.settings
        self._checked = now
        try:
            version = await self.store.version()
            if version != self._version:
                values = await self.store.list(GATEWAY_SCOPE)
                _, settings = effective(gateway_scope(), {}, values, on_invalid=_skip)
                if isinstance(settings, GatewaySettings):
                    self.settings = settings
                self._version = version
        except RedisError as exc:  # keep the last good settings while Redis is away
            log.debug("gateway settings not refreshed: %s", exc)
        return self.settings


def _skip(error: Exception) -> None:
    log.warning("ignoring gateway config: %s", error)
