"""``streamcart users``: manage accounts directly, such as the first admin.

``users create`` writes through the same code as the ``users.register``
handler (:func:`~streamcart.workers.users.accounts.create_account`), so it
needs no running users worker. A field that is not valid is a usage error
(exit code 2); an email that is taken is a failure (exit code 1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import click
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.errors import InvalidError
from streamcart.workers.users.accounts import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    check_signup,
    create_account,
)

T = TypeVar("T")


class CliState(Protocol):
    """What the ``streamcart`` group hands its commands (``cli.State``)."""

    keys: Keys

    def run(self, job: Callable[[Redis], Awaitable[T]]) -> T: ...


@click.group("users")
def users_group() -> None:
    """Manage user accounts."""


@users_group.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the account the admin role.")
@click.option("--name", help="Display name (default: the part of EMAIL before the @).")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help=f"{PASSWORD_MIN} to {PASSWORD_MAX} characters; prompted for when not given.",
)
@click.pass_obj
def users_create(state: CliState, email: str, admin: bool, name: str | None, password: str) -> None:
    """Create an account for EMAIL (with --admin, an administrator)."""
    name = name if name is not None else email.partition("@")[0]
    try:
        # Checked before connecting: a typo must not start an embedded server.
        check_signup(email, password, name)
    except InvalidError as exc:
        raise click.UsageError(f"{exc} (see `streamcart users create --help`)") from exc
    role = "admin" if admin else "user"
    user_id = state.run(lambda r: create_account(r, state.keys, email, password, name, role))
    click.echo(f"created {role} {email.strip().lower()} ({user_id})")
