"""Orders: checkout (with Idempotency-Key), the caller's orders, one order, cancel.

An order is visible to its owner and to admins; to anyone else it answers
exactly as a missing order does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from litestar.types import ControllerRouterHandler

from streamcart.errors import InvalidError, NotFoundError
from streamcart.gateway.access import signed_in, visible_to
from streamcart.gateway.bodies import StrictJsonBody
from streamcart.gateway.dependencies import claims_of, services_of
from streamcart.gateway.openapi import SERVICE_ERRORS, error_responses
from streamcart.workers import events
from streamcart.workers.inventory.stock import SKU_PATTERN
from streamcart.workers.orders.model import Order

Sku = Annotated[str, msgspec.Meta(pattern=SKU_PATTERN, description="A product id")]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]


class AddressBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Text
    line1: Text
    city: Text
    zone: Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=r"\S")]
    postcode: Annotated[str, msgspec.Meta(min_length=1, max_length=20, pattern=r"\S")]


class ItemBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sku: Sku
    qty: Annotated[int, msgspec.Meta(ge=1, le=99)]


class PlaceOrderBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``items``, or ``from_cart: true`` to order what is in the caller's cart."""

    items: Annotated[list[ItemBody], msgspec.Meta(max_length=50)] = msgspec.field(
        default_factory=list
    )
    from_cart: bool = False
    payment_method: Literal["alipay", "wechat", "card"]
    payment_token: Annotated[str, msgspec.Meta(max_length=200)] = ""
    address: AddressBody


class CancelBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class OrderPage(msgspec.Struct, frozen=True):
    items: list[Order]
    total: int


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key", required=False, max_length=200,
        description="Retries with the same key return the first order",
    ),
]  # fmt: skip


@post(
    "/api/orders",
    **signed_in(),
    status_code=HTTP_202_ACCEPTED,
    responses=error_responses(400, 401, 404, 409, 413, 422, *SERVICE_ERRORS),
)
async def place_order(
    data: StrictJsonBody[PlaceOrderBody],
    request: Request[Any, Any, State],
    state: State,
    idempotency_key: IdempotencyKey = None,
) -> events.OrderAccepted:
    """Place an order; it is PENDING until stock and payment settle it.

    A retry with the same ``Idempotency-Key`` returns the first order; the same
    key with another body is a 409.
    """
    user_id = claims_of(request).sub
    services = services_of(state)
    if data.from_cart == bool(data.items):
        raise InvalidError("give either items or from_cart: true")
    address = msgspec.to_builtins(data.address)
    if data.from_cart:
        checkout = {
            "user_id": user_id, "payment_method": data.payment_method,
            "payment_token": data.payment_token, "address": address,
            "idempotency_key": idempotency_key or "",
        }  # fmt: skip
        reply: events.OrderAccepted = await services.call(
            "cart.checkout", checkout, response_type=events.OrderAccepted
        )
        return reply
    place = events.PlaceOrder(
        user_id=user_id,
        items=[events.ItemRequest(sku=item.sku, qty=item.qty) for item in data.items],
        payment_method=data.payment_method, payment_token=data.payment_token,
        address=events.Address(**address), idempotency_key=idempotency_key or "",
    )  # fmt: skip
    accepted: events.OrderAccepted = await services.call(
        events.ORDERS_PLACE, place, response_type=events.OrderAccepted
    )
    return accepted


@get("/api/orders", **signed_in(), responses=error_responses(400, 401, *SERVICE_ERRORS))
async def list_orders(
    request: Request[Any, Any, State],
    state: State,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    offset: Annotated[int, QueryParameter(ge=0)] = 0,
) -> OrderPage:
    """The caller's orders, newest first."""
    query = {"user_id": claims_of(request).sub, "limit": limit, "offset": offset}
    page: OrderPage = await services_of(state).call("orders.list", query, response_type=OrderPage)
    return page


async def visible_order(request: Request[Any, Any, State], state: State, order_id: str) -> Order:
    """The order if the caller may see it; else the very answer a missing one gets."""
    try:
        order: Order = await services_of(state).call(
            "orders.get", {"order_id": order_id}, response_type=Order
        )
    except NotFoundError:
        raise NotFoundError(f"no order {order_id!r}") from None
    if not visible_to(claims_of(request), order.user_id):
        raise NotFoundError(f"no order {order_id!r}")
    return order


@get(
    "/api/orders/{order_id:str}",
    **signed_in(),
    responses=error_responses(401, 404, *SERVICE_ERRORS),
)
async def get_order(
    order_id: FromPath[str], request: Request[Any, Any, State], state: State
) -> Order:
    """An order's status and timeline (its owner or an admin)."""
    return await visible_order(request, state, order_id)


@post(
    "/api/orders/{order_id:str}/cancel",
    **signed_in(),
    status_code=HTTP_200_OK,
    responses=error_responses(400, 401, 404, 409, 413, *SERVICE_ERRORS),
)
async def cancel_order(
    order_id: FromPath[str],
    request: Request[Any, Any, State],
    state: State,
    data: StrictJsonBody[CancelBody | None] = None,
) -> Order:
    """Cancel an order before it ships: its stock is released and a payment refunded."""
    await visible_order(request, state, order_id)
    reason = (data.reason if data is not None else "") or "cancelled by the customer"
    cancelled: Order = await services_of(state).call(
        "orders.cancel", {"order_id": order_id, "reason": reason}, response_type=Order
    )
    return cancelled


def routes() -> list[ControllerRouterHandler]:
    return [place_order, list_orders, get_order, cancel_order]
