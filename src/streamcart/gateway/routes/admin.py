"""Admin routes: what an operator sees, behind the ``admin`` role."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.types import ControllerRouterHandler

from streamcart.gateway.auth import require_role
from streamcart.gateway.dependencies import claims_of, services_of
from streamcart.gateway.openapi import BEARER_SECURITY, error_responses
from streamcart.registry.report import as_data
from streamcart.registry.status import take_snapshot


@get("/api/admin/status", security=BEARER_SECURITY, responses=error_responses(401, 403, 429, 503))
async def admin_status(request: Request[Any, Any, State], state: State) -> dict[str, Any]:
    """The same view as `streamcart status --json` (needs an admin token)."""
    require_role(await claims_of(request), "admin")
    services = services_of(state)
    return as_data(await take_snapshot(services.redis, services.keys))


def routes() -> list[ControllerRouterHandler]:
    return [admin_status]
