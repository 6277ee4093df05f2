"""Calling services from the gateway: fail fast when nothing serves them.

Each call first asks :class:`~streamcart.registry.discovery.Discovery`
whether the service has a live instance (a request to a service nobody runs
would only time out), then goes through that service's circuit breaker, so a
service that keeps timing out is refused at once for a cool-down.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.rpc import RpcClient
from streamcart.errors import UnavailableError
from streamcart.gateway.middleware.deadline import current_deadline_ms
from streamcart.registry.discovery import Discovery
from streamcart.resilience.breaker import Breakers


class Services:
    """The gateway's way to call ``service.method``; started by the app's lifespan."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        timeout_s: float = 5.0,
        breakers: Breakers | None = None,
        discovery: Discovery | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.timeout_s = timeout_s
        self.breakers = breakers or Breakers()
        # A live service stays "live" for a quarter second without asking Redis again.
        self.discovery = discovery or Discovery(redis, keys, cache_ms=250)
        # The client wraps each call in its service's breaker.
        self.rpc = RpcClient(redis, keys, breakers=self.breakers)

    async def start(self) -> None:
        await self.rpc.start()

    async def aclose(self) -> None:
        await self.rpc.aclose()

    async def call(self, target: str, data: Any = None, *, response_type: Any = Any) -> Any:
        """Call ``target`` (``service.method``) and return its decoded reply.

        The call ends by the request's deadline when one is being served, and
        after ``timeout_s`` in any case.

        Raises:
            UnavailableError: no live instance of the service.
            CircuitOpenError: the service's breaker is open.
            RpcTimeoutError, NotFoundError, InvalidError, ConflictError,
            ForbiddenError, RemoteError: as :meth:`RpcClient.call`.
        """
        service = target.partition(".")[0]
        if not await self.discovery.is_available(service):
            raise UnavailableError(f"the {service} service has no live instance")
        return await self.rpc.call(
            target,
            data,
            timeout=self.timeout_s,
            deadline_ms=current_deadline_ms(),
            response_type=response_type,
        )
