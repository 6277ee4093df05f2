"""The users service: registration, login and profile lookup.

``users.register`` creates an account (one per email, checked under ``WATCH``)
and emits ``user.registered``; ``users.login`` trades an email and password
for a Bearer token signed with the current key of
:mod:`~streamcart.workers.users.signing_keys`; ``users.get`` answers a user's
public profile.
"""

from __future__ import annotations

import uuid

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from streamcart.workers.users import signing_keys, tokens
from streamcart.workers.users.accounts import (
    REGISTERED,
    SERVICE,
    account_fields,
    find_account,
    hash_password,
    load_account,
    new_account,
    normalize_email,
    password_matches,
    registered_event,
)

# One message for both causes, so a caller cannot probe which emails exist.
WRONG_CREDENTIALS = "wrong email or password"


class UsersSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The service's live-configurable knobs (``streamcart config set users ...``)."""

    token_ttl_s: int = 3600


class Register(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str
    name: str


class Registered(msgspec.Struct, frozen=True):
    user_id: str


class Login(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: str
    password: str


class LoggedIn(msgspec.Struct, frozen=True):
    token: str
    expires_at: int  # Unix seconds


class Get(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user_id: str


class User(msgspec.Struct, frozen=True, kw_only=True):
    """A user's profile as other services see it: never the password hash."""

    user_id: str
    email: str
    name: str
    role: str
    created_at: int


def no_such_user(user_id: str) -> NotFoundError:
    """The one answer for a user id that is unknown, or not the caller's to see."""
    return NotFoundError(f"no user {user_id!r}")


class _Decoy:
    """A hash to verify against when the email is unknown, so a miss costs as
    much time as a wrong password and timing does not tell the two apart."""

    def __init__(self) -> None:
        self._hash: str | None = None

    async def get(self) -> str:
        if self._hash is None:
            self._hash = await hash_password(uuid.uuid4().hex)
        return self._hash


class _Keys:
    """The signing keys, read from the environment on first use and kept
    (``streamcart worker users`` checks them before it starts)."""

    def __init__(self, keys: tokens.SigningKeys | None) -> None:
        self._keys = keys

    def get(self) -> tokens.SigningKeys:
        if self._keys is None:
            self._keys = signing_keys.from_environment()
        return self._keys


def build(
    options: ServiceOptions | None = None, *, keys: tokens.SigningKeys | None = None
) -> Service:
    """The users service; it signs tokens with ``keys``, by default those of
    the environment (:func:`signing_keys.from_environment`)."""
    service = Service(SERVICE, options=options, settings=UsersSettings)
    decoy = _Decoy()
    signing = _Keys(keys)

    @service.on("users.register")
    async def register(msg: Register, ctx: Context) -> Registered:
        """A new account with role ``user``; its email must be free.

        Raises:
            InvalidError: a field is not valid.
            ConflictError: the email is registered already.
        """
        taken = ctx.key("email", normalize_email(msg.email))
        if await ctx.redis.exists(taken):  # cheap refusal before the slow hash
            raise ConflictError("email already registered")
        account = await new_account(msg.email, msg.password, msg.name, "user")
        # A concurrent registration that commits first fails our commit; the
        # retry then finds the email taken.
        await ctx.watch(taken)
        if await ctx.redis.exists(taken):
            raise ConflictError("email already registered")
        ctx.tx.set(taken, account.user_id)
        ctx.tx.hset(ctx.key("user", account.user_id), mapping=account_fields(account))
        ctx.publish(REGISTERED, registered_event(account), key=account.user_id)
        return Registered(account.user_id)

    @service.on("users.login")
    async def login(msg: Login, ctx: Context) -> LoggedIn:
        """A token for the account, valid ``token_ttl_s`` seconds.

        Raises:
            ForbiddenError: unknown email or wrong password (the same message).
            ConfigurationError: no signing key is configured.
        """
        try:
            email = normalize_email(msg.email)
        except InvalidError:
            raise ForbiddenError(WRONG_CREDENTIALS) from None
        account = await find_account(ctx.redis, ctx.keys, email)
        stored = account.password_hash if account is not None else await decoy.get()
        if not await password_matches(stored, msg.password) or account is None:
            raise ForbiddenError(WRONG_CREDENTIALS)
        ttl = ctx.config.token_ttl_s if ctx.config is not None else UsersSettings().token_ttl_s
        key = signing.get().current
        token, expires_at = tokens.issue(key, account.user_id, account.role, ttl_s=ttl)
        return LoggedIn(token, expires_at)

    @service.on("users.get")
    async def get(msg: Get, ctx: Context) -> User:
        """The user's profile.

        Raises:
            NotFoundError: no user has this id.
        """
        account = await load_account(ctx.redis, ctx.keys, msg.user_id) if msg.user_id else None
        if account is None:
            raise no_such_user(msg.user_id)
        return User(
            user_id=account.user_id,
            email=account.email,
            name=account.name,
            role=account.role,
            created_at=account.created_at,
        )

    return service
