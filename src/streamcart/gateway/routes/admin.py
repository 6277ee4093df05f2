"""Admin routes: what an operator sees, behind the ``admin`` role."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import State
from litestar.types import ControllerRouterHandler

from streamcart.gateway.access import ADMIN, signed_in
from streamcart.gateway.dependencies import services_of
from streamcart.gateway.openapi import error_responses
from streamcart.registry.report import as_data
from streamcart.registry.status import take_snapshot


@get("/api/admin/status", **signed_in(ADMIN), responses=error_responses(401, 403, 429, 503))
async def admin_status(state: State) -> dict[str, Any]:
    """The same view as `streamcart status --json` (needs an admin token)."""
    services = services_of(state)
    return as_data(await take_snapshot(services.redis, services.keys))


def routes() -> list[ControllerRouterHandler]:
    return [admin_status]
