"""The HTTP edge: auth, rate limits, routing, breakers."""

from streamcart.gateway.app import create_app, gateway_main

__all__ = ["create_app", "gateway_main"]
