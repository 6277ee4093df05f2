"""Accounts: register, log in, and who am I."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from litestar.types import ControllerRouterHandler

from streamcart.gateway.dependencies import claims_of, services_of

T = TypeVar("T")


# The body marker litestar 3 requires; spelled with Body() so older 2.x releases take it too.
JsonBody = Annotated[T, Body(media_type=RequestEncodingType.JSON)]


class Register(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str
    name: str


class Registered(msgspec.Struct, frozen=True):
    user_id: str


class Login(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str


class Token(msgspec.Struct, frozen=True):
    """A Bearer token and when it expires (Unix seconds)."""

    token: str
    expires_at: int


@post("/api/users/register", status_code=HTTP_201_CREATED)
async def register(data: JsonBody[Register], state: State) -> Registered:
    """Create an account; 409 when the email is taken."""
    reply: Registered = await services_of(state).call(
        "users.register", data, response_type=Registered
    )
    return reply


@post("/api/users/login", status_code=HTTP_200_OK)
async def login(data: JsonBody[Login], state: State) -> Token:
    """Exchange an email and password for a Bearer token."""
    reply: Token = await services_of(state).call("users.login", data, response_type=Token)
    return reply


@get("/api/me")
async def me(request: Request[Any, Any, State], state: State) -> dict[str, Any]:
    """The caller's own account (needs a Bearer token)."""
    claims = await claims_of(request)
    reply: dict[str, Any] = await services_of(state).call(
        "users.get", {"user_id": claims.sub}, response_type=dict[str, Any]
    )
    return reply


def routes() -> list[ControllerRouterHandler]:
    return [register, login, me]
