"""Click parameter callbacks: a value that fails its check is a usage error
(exit code 2) carrying the check's own message."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from streamcart.errors import ConfigurationError

T = TypeVar("T")
R = TypeVar("R")
Callback = Callable[[click.Context, click.Parameter, T], R]


def converted_by(convert: Callable[[T], R]) -> Callback[T, R]:
    """The parameter becomes ``convert(value)``."""

    def callback(ctx: click.Context, param: click.Parameter, value: T) -> R:
        try:
            return convert(value)
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc)) from exc

    return callback


def checked_by(check: Callable[[T], object]) -> Callback[T, T]:
    """The parameter stays as given once ``check(value)`` passes."""

    def keep(value: T) -> T:
        check(value)
        return value

    return converted_by(keep)
