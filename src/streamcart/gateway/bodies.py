"""How routes declare JSON bodies, so the OpenAPI document is as strict as the gateway."""

from __future__ import annotations

from typing import Annotated, TypeVar

from litestar.enums import RequestEncodingType
from litestar.params import Body, PathParameter

from streamcart.workers.inventory.stock import SKU_PATTERN

T = TypeVar("T")

# The body marker litestar 3 requires; spelled with Body() so older 2.x releases take it too.
JsonBody = Annotated[T, Body(media_type=RequestEncodingType.JSON)]
# The same for a Struct with ``forbid_unknown_fields``: the document says so too, as
# litestar's schema for a Struct leaves ``additionalProperties`` out.
StrictJsonBody = Annotated[
    T,
    Body(media_type=RequestEncodingType.JSON, schema_extra={"additional_properties": False}),
]

# A product id in a path: anything else is a 400 before any service is asked.
SkuInPath = Annotated[str, PathParameter(pattern=SKU_PATTERN, description="A product id")]
