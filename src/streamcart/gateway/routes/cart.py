"""The caller's cart."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK
from litestar.types import ControllerRouterHandler

from streamcart.gateway.access import signed_in
from streamcart.gateway.bodies import SkuInPath, StrictJsonBody
from streamcart.gateway.dependencies import claims_of, services_of
from streamcart.gateway.openapi import SERVICE_ERRORS, error_responses
from streamcart.workers.cart.pricing import CartView
from streamcart.workers.cart.service import CartLine
from streamcart.workers.inventory.stock import SKU_PATTERN


class AddItemBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Annotated[str, msgspec.Meta(pattern=SKU_PATTERN)]
    qty: Annotated[int, msgspec.Meta(ge=1, le=99)] = 1


@get("/api/cart", **signed_in(), responses=error_responses(401, *SERVICE_ERRORS))
async def get_cart(request: Request[Any, Any, State], state: State) -> CartView:
    """The caller's cart, priced now."""
    cart: CartView = await services_of(state).call(
        "cart.get", {"user_id": claims_of(request).sub}, response_type=CartView
    )
    return cart


@post(
    "/api/cart/items",
    **signed_in(),
    status_code=HTTP_200_OK,
    responses=error_responses(400, 401, 404, 413, 422, *SERVICE_ERRORS),
)
async def add_item(
    data: StrictJsonBody[AddItemBody], request: Request[Any, Any, State], state: State
) -> CartLine:
    """Add ``qty`` of ``sku`` (to what is there already); answers the line's new quantity."""
    line = {"user_id": claims_of(request).sub, "sku": data.sku, "qty": data.qty}
    added: CartLine = await services_of(state).call("cart.add_item", line, response_type=CartLine)
    return added


@delete(
    "/api/cart/items/{sku:str}",
    **signed_in(),
    status_code=HTTP_200_OK,
    responses=error_responses(400, 401, *SERVICE_ERRORS),
)
async def remove_item(sku: SkuInPath, request: Request[Any, Any, State], state: State) -> CartLine:
    """Take ``sku`` out of the cart."""
    line = {"user_id": claims_of(request).sub, "sku": sku}
    removed: CartLine = await services_of(state).call(
        "cart.remove_item", line, response_type=CartLine
    )
    return removed


@delete(
    "/api/cart",
    **signed_in(),
    status_code=HTTP_200_OK,
    responses=error_responses(401, *SERVICE_ERRORS),
)
async def clear_cart(request: Request[Any, Any, State], state: State) -> CartView:
    """Empty the cart."""
    services = services_of(state)
    user = {"user_id": claims_of(request).sub}
    await services.call("cart.clear", user)
    cart: CartView = await services.call("cart.get", user, response_type=CartView)
    return cart


def routes() -> list[ControllerRouterHandler]:
    return [get_cart, add_item, remove_item, clear_cart]
