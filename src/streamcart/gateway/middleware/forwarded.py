"""The client's real address behind trusted proxies (:mod:`..client_address`).

Rewrites the ASGI scope's ``client`` for everything after it (the rate
limits, the login limits, logs), with the proxies the ``gateway`` scope
trusts now. The server itself honours no forwarding header: uvicorn runs
with ``proxy_headers`` off, so this is the only reading of them.
"""

from __future__ import annotations

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from streamcart.gateway.client_address import client_address, forwarded_for, trusted_networks
from streamcart.gateway.settings import LiveSettings


class ForwardedMiddleware(ASGIMiddleware):
    """Sets ``scope["client"]`` to the address the trusted proxies report."""

    def __init__(self, settings: LiveSettings) -> None:
        self.settings = settings

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        peer = scope.get("client")
        hops = forwarded_for(scope.get("headers", ()))
        if peer and hops:
            current = await self.settings.current()
            trusted = trusted_networks(current.trusted_proxies)
            address = client_address(peer[0], hops, trusted)
            if address != peer[0]:
                scope["client"] = (address, 0)
        await next_app(scope, receive, send)
