"""What route handlers reach through state: the services caller and the caller's claims.

Read from ``state`` explicitly rather than injected by name, which litestar
deprecates for 3.0 in favour of annotations that older 2.x releases lack.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from streamcart.gateway.services import Services
from streamcart.workers.users.tokens import Claims

SERVICES = "services"
AUTHENTICATOR = "authenticator"
CLAIMS = "claims"


def services_of(state: State) -> Services:
    services: Services = state[SERVICES]
    return services


def claims_of(request: Request[Any, Any, State]) -> Claims:
    """The caller's verified claims, left by the route's guard (:mod:`.access`)."""
    claims: Claims = request.state[CLAIMS]
    return claims
