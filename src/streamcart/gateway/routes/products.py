"""Products: search, the product page, and creating products (admins).

The product page is assembled from four services at once. The catalog is
essential (without it there is no page); stock, reviews and recommendations
are not: each that fails or is slow becomes ``null`` (or empty) and is named
in ``degraded``, so one sick service never takes the page down.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_201_CREATED
from litestar.types import ControllerRouterHandler

from streamcart.errors import StreamcartError
from streamcart.gateway.access import ADMIN, optional_claims, signed_in
from streamcart.gateway.bodies import SkuInPath, StrictJsonBody
from streamcart.gateway.dependencies import services_of
from streamcart.gateway.openapi import SERVICE_ERRORS, error_responses
from streamcart.workers.catalog.feedback import Rating
from streamcart.workers.catalog.service import ProductPage, SearchResult
from streamcart.workers.events import Product
from streamcart.workers.inventory.service import Levels
from streamcart.workers.inventory.stock import SKU_PATTERN
from streamcart.workers.recommendations.ranking import Item
from streamcart.workers.recommendations.service import ProductRecommendations
from streamcart.workers.satisfaction.messages import PublishedReview, ReviewPage

# A non-essential part of the page gets this long before the page goes without it.
PART_TIMEOUT_S = 1.0
REVIEWS_ON_PAGE = 5
RECOMMENDATIONS_ON_PAGE = 6


class ProductBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    sku: Annotated[str, msgspec.Meta(pattern=SKU_PATTERN)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
    description: Annotated[str, msgspec.Meta(max_length=5_000)] = ""
    price: Annotated[int, msgspec.Meta(ge=1, le=100_000_000, description="minor units")]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] = "CNY"
    category: Annotated[str, msgspec.Meta(max_length=100)] = ""
    weight_g: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0


class Stock(msgspec.Struct, frozen=True):
    available: int


class Page(msgspec.Struct, frozen=True, kw_only=True):
    """The product page (contract section 5)."""

    product: ProductPage
    stock: Stock | None
    rating: Rating
    reviews: list[PublishedReview]
    recommendations: list[Item]
    degraded: list[str]


@get(
    "/api/products",
    responses=error_responses(400, 422, *SERVICE_ERRORS),
)
async def search_products(
    state: State,
    q: Annotated[str, QueryParameter(max_length=200)] = "",
    category: Annotated[str, QueryParameter(max_length=100)] = "",
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    offset: Annotated[int, QueryParameter(ge=0, le=100_000)] = 0,
) -> SearchResult:
    """Products matching every word of ``q`` (the last one as a prefix), in ``category``."""
    query = {"q": q, "category": category, "limit": limit, "offset": offset}
    found: SearchResult = await services_of(state).call(
        "catalog.search", query, response_type=SearchResult
    )
    return found


@get("/api/products/{sku:str}", responses=error_responses(400, 404, *SERVICE_ERRORS))
async def product_page(sku: SkuInPath, request: Request[Any, Any, State], state: State) -> Page:
    """The product with its stock, rating, reviews and recommendations, fetched in parallel."""
    services = services_of(state)
    claims = await optional_claims(request)
    viewer = {"sku": sku, **({"user_id": claims.sub} if claims else {})}
    product_call = services.call("catalog.get_product", viewer, response_type=ProductPage)
    parts = {
        "stock": services.call("inventory.get_stock", {"sku": sku}, response_type=Levels),
        "reviews": services.call(
            "satisfaction.get_reviews", {"sku": sku, "limit": REVIEWS_ON_PAGE},
            response_type=ReviewPage,
        ),
        "recommendations": services.call(
            "recommendations.for_product", {"sku": sku, "limit": RECOMMENDATIONS_ON_PAGE},
            response_type=ProductRecommendations,
        ),
    }  # fmt: skip
    optional = [asyncio.wait_for(call, PART_TIMEOUT_S) for call in parts.values()]
    product, *answers = await asyncio.gather(product_call, *optional, return_exceptions=True)
    if isinstance(product, BaseException):
        raise product  # no page without the catalog
    found = dict(zip(parts, answers, strict=True))
    degraded = [name for name, answer in found.items() if isinstance(answer, BaseException)]
    for name in degraded:
        error = found[name]
        if not isinstance(error, StreamcartError | TimeoutError):
            raise error  # a bug, not a sick service
    stock = found["stock"]
    reviews = found["reviews"]
    recommendations = found["recommendations"]
    return Page(
        product=product,
        stock=Stock(stock.items[0].available) if isinstance(stock, Levels) else None,
        rating=product.rating,
        reviews=reviews.items if isinstance(reviews, ReviewPage) else [],
        recommendations=(
            recommendations.items if isinstance(recommendations, ProductRecommendations) else []
        ),
        degraded=degraded,
    )


@post(
    "/api/products",
    **signed_in(ADMIN),
    status_code=HTTP_201_CREATED,
    responses=error_responses(400, 401, 403, 409, 413, 422, *SERVICE_ERRORS),
)
async def create_product(data: StrictJsonBody[ProductBody], state: State) -> Product:
    """Add a product to the catalog (``sku`` is its id in paths)."""
    created: Product = await services_of(state).call(
        "catalog.create_product", data, response_type=Product
    )
    return created


def routes() -> list[ControllerRouterHandler]:
    return [search_products, product_page, create_product]
