"""Stock, for admins."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import post
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK
from litestar.types import ControllerRouterHandler

from streamcart.gateway.access import ADMIN, signed_in
from streamcart.gateway.bodies import SkuInPath, StrictJsonBody
from streamcart.gateway.dependencies import services_of
from streamcart.gateway.openapi import SERVICE_ERRORS, error_responses
from streamcart.workers.inventory.service import MAX_ADD
from streamcart.workers.inventory.stock import Level


class AddStockBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    qty: Annotated[int, msgspec.Meta(ge=1, le=MAX_ADD)]


@post(
    "/api/inventory/{sku:str}/stock",
    **signed_in(ADMIN),
    status_code=HTTP_200_OK,
    responses=error_responses(400, 401, 403, 413, 422, *SERVICE_ERRORS),
)
async def add_stock(sku: SkuInPath, data: StrictJsonBody[AddStockBody], state: State) -> Level:
    """Receive ``qty`` units of ``sku``; answers the stock after it."""
    level: Level = await services_of(state).call(
        "inventory.add_stock", {"sku": sku, "qty": data.qty}, response_type=Level
    )
    return level


def routes() -> list[ControllerRouterHandler]:
    return [add_stock]
