"""Accounts: register, log in, who am I, and a user's account."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from litestar.types import ControllerRouterHandler

from streamcart.gateway.access import signed_in, visible_to
from streamcart.gateway.bodies import StrictJsonBody
from streamcart.gateway.dependencies import claims_of, services_of
from streamcart.gateway.login_limit import LOGIN_LIMITER, LoginLimiter
from streamcart.gateway.openapi import SERVICE_ERRORS, error_responses
from streamcart.workers.users.accounts import (
    EMAIL_MAX,
    EMAIL_PATTERN,
    NAME_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    WHITESPACE,
)
from streamcart.workers.users.service import LoggedIn, Login, Registered, User, no_such_user

# The users service's rules for a signup (accounts.check_signup), so that a body
# the document calls valid is one the service accepts; one breaking them is a 400 here.
Email = Annotated[
    str,
    msgspec.Meta(max_length=EMAIL_MAX, pattern=EMAIL_PATTERN, description="An email address"),
]
Password = Annotated[str, msgspec.Meta(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
# At least one character that is not whitespace, as the service trims the name.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX, pattern=f"[^{WHITESPACE}]")]


# The service's own Register is loose (it answers 422 with a readable reason);
# this one carries the limits into the OpenAPI document. Replies and the login
# body are the service's types.
class Register(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: Email
    password: Password
    name: Name


@post(
    "/api/users/register",
    status_code=HTTP_201_CREATED,
    responses=error_responses(400, 409, 413, 422, *SERVICE_ERRORS),
)
async def register(data: StrictJsonBody[Register], state: State) -> Registered:
    """Create an account; 409 when the email is taken."""
    reply: Registered = await services_of(state).call(
        "users.register", data, response_type=Registered
    )
    return reply


@post(
    "/api/users/login",
    status_code=HTTP_200_OK,
    responses=error_responses(400, 403, 413, *SERVICE_ERRORS),
)
async def login(
    data: StrictJsonBody[Login], request: Request[Any, Any, State], state: State
) -> LoggedIn:
    """Exchange an email and password for a Bearer token; 403 for wrong credentials,
    429 past the attempts allowed for the account or from the client's address."""
    limiter: LoginLimiter = state[LOGIN_LIMITER]
    client = request.client
    await limiter.admit(data.email, client.host if client else "unknown")
    reply: LoggedIn = await services_of(state).call("users.login", data, response_type=LoggedIn)
    return reply


@get("/api/me", **signed_in(), responses=error_responses(401, 404, *SERVICE_ERRORS))
async def me(request: Request[Any, Any, State], state: State) -> User:
    """The caller's own account (needs a Bearer token)."""
    return await _user(state, claims_of(request).sub)


@get(
    "/api/users/{user_id:str}",
    **signed_in(),
    responses=error_responses(401, 404, *SERVICE_ERRORS),
)
async def user(user_id: FromPath[str], request: Request[Any, Any, State], state: State) -> User:
    """A user's account: your own, or anyone's for an admin; 404 for any other."""
    if not visible_to(claims_of(request), user_id):
        raise no_such_user(user_id)
    return await _user(state, user_id)


async def _user(state: State, user_id: str) -> User:
    reply: User = await services_of(state).call(
        "users.get", {"user_id": user_id}, response_type=User
    )
    return reply


def routes() -> list[ControllerRouterHandler]:
    return [register, login, me, user]
