"""A small service that declares settings, for the config store tests.

Loadable as ``tests.shop:build`` (the CLI looks a service up to know its
settings type). Its handler records what it saw in ``ctx.config``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service

NAME = "shop"
# Short reads and grace: an in-process worker stops within a fraction of a second.
OPTIONS = ServiceOptions(block_ms=100, claim_timeout_ms=1000, shutdown_grace_s=2.0)


class Knobs(msgspec.Struct, frozen=True, kw_only=True):
    """The shop's business knobs."""

    greeting: str = "hello"
    discount_pct: int = 0
    featured: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 <= self.discount_pct <= 90:
            raise ValueError("discount_pct must be between 0 and 90")


def build() -> Service:
    service = Service(NAME, options=OPTIONS, settings=Knobs)

    @service.on("shop.greet")
    async def greet(msg: dict[str, Any], ctx: Context) -> None:
        knobs: Knobs = ctx.config
        ctx.tx.rpush(ctx.key("greetings"), f"{knobs.greeting} {knobs.discount_pct}%")

    return service
