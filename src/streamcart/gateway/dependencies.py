"""What route handlers reach through the app's state: the services caller and the caller's claims.

Read from ``state`` explicitly rather than injected by name, which litestar
deprecates for 3.0 in favour of annotations that older 2.x releases lack.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State

from streamcart.gateway.auth import Authenticator
from streamcart.gateway.services import Services
from streamcart.workers.users.tokens import Claims

SERVICES = "services"
AUTHENTICATOR = "authenticator"


def services_of(state: State) -> Services:
    services: Services = state[SERVICES]
    return services


async def claims_of(request: Request[Any, Any, State]) -> Claims:
    """The verified claims of the caller; a route that asks for them needs a token.

    Raises:
        InvalidTokenError: answered 401 with ``WWW-Authenticate: Bearer``.
    """
    authenticator: Authenticator = request.app.state[AUTHENTICATOR]
    return await authenticator.claims(request.headers)
