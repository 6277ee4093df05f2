"""Declaring a service: mistakes fail at declaration, routing follows the type."""

from __future__ import annotations

import msgspec
import pytest

from streamcart import Context, Service
from streamcart.bus.keys import Keys
from streamcart.errors import ConfigurationError


class Placed(msgspec.Struct):
    order_id: str


def test_commands_come_from_the_inbox_and_events_from_their_topics() -> None:
    orders = Service("orders")

    @orders.on("orders.place")
    async def place(msg: Placed, ctx: Context) -> None: ...

    @orders.on("payment.*")
    async def payments(msg: dict[str, object], ctx: Context) -> None: ...

    @orders.on("inventory.reserved")
    async def reserved(msg: Placed, ctx: Context) -> None: ...

    assert orders.streams(Keys("sc")) == [
        "sc:inbox:orders",
        "sc:events:inventory",
        "sc:events:payment",
    ]
    assert orders.handler_for("payment.captured") is not None
    assert orders.handler_for("inventory.reserved") is not None
    assert orders.handler_for("inventory.rejected") is None


@pytest.mark.parametrize("bad", ["Orders", "or ders", "", "1orders"])
def test_a_bad_service_name_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="service name"):
        Service(bad)


@pytest.mark.parametrize("reserved", ["global", "config"])
def test_names_the_config_store_uses_are_reserved(reserved: str) -> None:
    with pytest.raises(ConfigurationError, match="is reserved"):
        Service(reserved)


@pytest.mark.parametrize("bad", ["placed", "order.Placed", "order.placed.now", "*.x"])
def test_a_bad_message_type_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match=r"must look like 'topic\.name'"):
        Service("orders").on(bad)


def test_a_duplicate_handler_is_refused() -> None:
    svc = Service("orders")

    @svc.on("order.placed")
    async def first(msg: Placed, ctx: Context) -> None: ...

    with pytest.raises(ConfigurationError, match="exists already"):
        svc.on("order.placed")


def test_a_sync_handler_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="async def"):

        @Service("orders").on("order.placed")
        def handler(msg: Placed, ctx: Context) -> None: ...  # type: ignore[arg-type]


def test_a_handler_without_payload_annotation_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="annotate its first parameter"):

        @Service("orders").on("order.placed")
        async def handler(msg, ctx: Context) -> None: ...  # type: ignore[no-untyped-def]
