"""Accounts: the rules for a valid signup, password hashing and the stored record.

Shared by the ``users.register`` handler (which commits through ``ctx.tx``)
and by :func:`create_account`, the direct write ``streamcart users create``
uses, so both check and store an account the same way.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis
from redis.exceptions import WatchError

from streamcart.bus.connection import transaction
from streamcart.bus.keys import Keys
from streamcart.bus.publisher import Publisher
from streamcart.errors import ConflictError, InvalidError, WriteConflictError
from streamcart.workers.users.tokens import ROLES

SERVICE = "users"
REGISTERED = "user.registered"
PASSWORD_MIN, PASSWORD_MAX = 8, 128
NAME_MAX = 100
EMAIL_MAX = 254
# Python's whitespace (what str.isspace and re's \s match), spelled out: the gateway's
# OpenAPI document carries EMAIL_PATTERN, and JSON Schema reads \s as ECMA-262 does,
# which is another set of characters.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Deliberately loose: one @, no spaces, a dot in the domain. Deliverability is
# the mail server's call, not ours.
EMAIL_PATTERN = rf"^[^@{WHITESPACE}]+@[^@{WHITESPACE}]+\.[^@{WHITESPACE}.]+$"
_EMAIL = re.compile(EMAIL_PATTERN)
_WATCH_TRIES = 5

_hasher = PasswordHasher()


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """A user as stored (the hash ``user:<id>``); ``password_hash`` never leaves the service."""

    user_id: str
    email: str
    name: str
    role: str
    password_hash: str
    created_at: int  # Unix seconds


def canonical_email(email: str) -> str:
    """``email`` as accounts are keyed by it (trimmed, lower-cased), valid or not."""
    return email.strip().lower()


def normalize_email(email: str) -> str:
    """``email`` trimmed and lower-cased.

    Raises:
        InvalidError: it does not look like an email address.
    """
    normalized = canonical_email(email)
    if len(normalized) > EMAIL_MAX or not _EMAIL.match(normalized):
        raise InvalidError(f"email {email!r} does not look like an email address")
    return normalized


def check_password(password: str) -> None:
    """Raises:
    InvalidError: the password is shorter than 8 or longer than 128 characters.
    """
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidError(
            f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long, "
            f"got {len(password)}"
        )


def check_name(name: str) -> str:
    """``name`` trimmed.

    Raises:
        InvalidError: it is empty or longer than 100 characters.
    """
    trimmed = name.strip()
    if not 1 <= len(trimmed) <= NAME_MAX:
        raise InvalidError(f"name must be 1 to {NAME_MAX} characters long")
    return trimmed


def check_signup(email: str, password: str, name: str) -> tuple[str, str]:
    """The normalized (email, name) of a valid signup.

    Raises:
        InvalidError: the first field that is not valid, with why.
    """
    normalized = normalize_email(email)
    check_password(password)
    return normalized, check_name(name)


async def hash_password(password: str) -> str:
    """An argon2id hash; run off the event loop, as it is slow on purpose."""
    return await asyncio.to_thread(_hasher.hash, password)


async def password_matches(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (a malformed hash never matches)."""

    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def new_account(email: str, password: str, name: str, role: str = "user") -> Account:
    """A checked account with a fresh id and the password hashed; nothing is stored.

    Raises:
        InvalidError: a field is not valid, or ``role`` is not a known role.
    """
    if role not in ROLES:
        raise InvalidError(f"role must be one of {ROLES}, got {role!r}")
    email, name = check_signup(email, password, name)
    return Account(
        user_id=uuid.uuid4().hex,
        email=email,
        name=name,
        role=role,
        password_hash=await hash_password(password),
        created_at=int(time.time()),
    )


def email_key(keys: Keys, email: str) -> str:
    """The key holding the id of the account with this (normalized) email."""
    return keys.state(SERVICE, "email", email)


def user_key(keys: Keys, user_id: str) -> str:
    """The hash of one account."""
    return keys.state(SERVICE, "user", user_id)


def account_fields(account: Account) -> dict[str, str]:
    """The account as the fields of its hash."""
    return {name: str(value) for name, value in msgspec.structs.asdict(account).items()}


async def load_account(redis: Redis, keys: Keys, user_id: str) -> Account | None:
    """The stored account with this id, or None."""
    fields = await redis.hgetall(user_key(keys, user_id))
    if not fields:
        return None
    return msgspec.convert(fields, Account, strict=False)


async def find_account(redis: Redis, keys: Keys, email: str) -> Account | None:
    """The stored account with this (normalized) email, or None."""
    user_id = await redis.get(email_key(keys, email))
    return None if user_id is None else await load_account(redis, keys, str(user_id))


def registered_event(account: Account) -> dict[str, str]:
    """The data of ``user.registered``: never the hash."""
    return {"user_id": account.user_id, "email": account.email, "name": account.name}


async def create_account(
    redis: Redis, keys: Keys, email: str, password: str, name: str, role: str = "user"
) -> str:
    """Store a new account and announce it (``user.registered``); returns its id.

    The email key and the user hash are written in one ``MULTI`` under
    ``WATCH``, so a concurrent registration of the same email (this function
    or the ``users.register`` handler) leaves exactly one account.

    Raises:
        InvalidError: a field is not valid.
        ConflictError: the email is registered already.
        WriteConflictError: the email key kept changing under us.
    """
    email = normalize_email(email)
    taken = email_key(keys, email)
    if await redis.exists(taken):  # before the slow hash
        raise ConflictError("email already registered")
    account = await new_account(email, password, name, role)
    async with await transaction(redis, taken) as pipe:
        for _ in range(_WATCH_TRIES):
            try:
                await pipe.watch(taken)
                if await pipe.exists(taken):
                    raise ConflictError("email already registered")
                pipe.multi()
                pipe.set(taken, account.user_id)
                pipe.hset(user_key(keys, account.user_id), mapping=account_fields(account))
                await pipe.execute()
                break
            except WatchError:
                continue
        else:
            raise WriteConflictError(f"{email}: the email key kept changing; try again")
    # Not atomic with the write (unlike the handler's outbox): a crash here
    # loses the announcement, never the account.
    await Publisher(redis, keys).publish(REGISTERED, registered_event(account), key=account.user_id)
    return account.user_id
