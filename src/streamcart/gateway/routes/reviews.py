"""Reviews (through moderation) and recommendations for the caller."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.status_codes import HTTP_202_ACCEPTED
from litestar.types import ControllerRouterHandler

from streamcart.gateway.access import signed_in
from streamcart.gateway.bodies import StrictJsonBody
from streamcart.gateway.dependencies import claims_of, services_of
from streamcart.gateway.openapi import SERVICE_ERRORS, error_responses
from streamcart.workers.inventory.stock import SKU_PATTERN
from streamcart.workers.recommendations.ranking import Ranked
from streamcart.workers.satisfaction.messages import Submitted


class ReviewBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    product_id: Annotated[str, msgspec.Meta(pattern=SKU_PATTERN)]
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)]
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2_000, pattern=r"\S")]


@post(
    "/api/reviews",
    **signed_in(),
    status_code=HTTP_202_ACCEPTED,
    responses=error_responses(400, 401, 409, 413, 422, *SERVICE_ERRORS),
)
async def submit_review(
    data: StrictJsonBody[ReviewBody], request: Request[Any, Any, State], state: State
) -> Submitted:
    """Submit a review; it is PENDING until moderation publishes or rejects it."""
    review = {"user_id": claims_of(request).sub, "sku": data.product_id,
              "rating": data.rating, "text": data.text}  # fmt: skip
    submitted: Submitted = await services_of(state).call(
        "satisfaction.submit_review", review, response_type=Submitted
    )
    return submitted


@get("/api/recommendations", **signed_in(), responses=error_responses(401, *SERVICE_ERRORS))
async def recommendations(request: Request[Any, Any, State], state: State) -> Ranked:
    """Products for the caller: from what they bought and viewed, else what is popular."""
    ranked: Ranked = await services_of(state).call(
        "recommendations.for_user", {"user_id": claims_of(request).sub}, response_type=Ranked
    )
    return ranked


def routes() -> list[ControllerRouterHandler]:
    return [submit_review, recommendations]
