"""Stock levels and reservations: the two scripts, and reading what they keep.

Per sku a hash ``stock:<sku>`` holds ``available``, ``reserved``, ``shipped``
and ``added``; ``available + reserved + shipped == added`` always, because
only the scripts move stock between the first three. Per order a hash
``reservation:<order_id>`` holds its state and its lines, and the ids of the
messages that reserved and settled it: the scripts write stock before the
handler's commit, so a message handled again after a crash in between finds
its own step done and must still announce it (and a different message about
the same order must not announce it a second time).
"""

from __future__ import annotations

import re

import msgspec
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.scripts import Script
from streamcart.errors import InvalidError, StreamcartError
from streamcart.workers.events import Line, Shortage

SERVICE = "inventory"
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SKU = re.compile(SKU_PATTERN)
_reserve = Script("reserve.lua", "streamcart.workers.inventory")
_settle = Script("settle.lua", "streamcart.workers.inventory")
RESERVED, REJECTED, CANCELLED, RELEASED, COMMITTED = (
    "reserved", "rejected", "cancelled", "released", "committed",
)  # fmt: skip


class Level(msgspec.Struct, frozen=True, kw_only=True):
    """One sku's stock."""

    sku: str
    available: int = 0
    reserved: int = 0
    shipped: int = 0
    added: int = 0


class Reservation(msgspec.Struct, frozen=True, kw_only=True):
    """What a reserve call decided, with the stock that fell low because of it."""

    state: str
    shortages: list[Shortage]
    low: dict[str, int]


class Settled(msgspec.Struct, frozen=True):
    """The reservation's state after a settle call, and whether the message
    that asked is the one that moved it there (on this call or an earlier run)."""

    state: str
    by_this_message: bool


def check_sku(sku: str) -> str:
    """``sku`` when it is a valid product id.

    Raises:
        InvalidError: it is not.
    """
    if not _SKU.match(sku):
        raise InvalidError(f"sku {sku!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return sku


def stock_key(keys: Keys, sku: str) -> str:
    return keys.state(SERVICE, "stock", sku)


def reservation_key(keys: Keys, order_id: str) -> str:
    return keys.state(SERVICE, "reservation", order_id)


async def reserve(
    redis: Redis,
    keys: Keys,
    order_id: str,
    lines: list[Line],
    *,
    low_threshold: int,
    message_id: str,
) -> Reservation:
    """Hold every line for ``order_id``, or none if any is short; ``low`` is
    answered to ``message_id`` alone, however often it asks."""
    merged: dict[str, int] = {}
    for line in lines:
        merged[line.sku] = merged.get(line.sku, 0) + line.qty
    script_keys = [reservation_key(keys, order_id), *(stock_key(keys, sku) for sku in merged)]
    args: list[str | int] = [low_threshold, message_id]
    for sku, qty in merged.items():
        args += (sku, qty)
    state, shortages, low = await _reserve(redis, script_keys, args)
    return Reservation(state=state, shortages=_shortages(shortages), low=_levels(low))


async def settle(
    redis: Redis, keys: Keys, order_id: str, action: str, *, message_id: str
) -> Settled:
    """``release`` or ``commit`` the order's reservation, if it is held.

    The script reads the lines in the step that moves them and names them when
    they are not the skus it was given: a held reservation takes a second call.
    Lines are written once, with the reservation, so the second call cannot miss.

    Raises:
        StreamcartError: the lines changed under a second call (never, unless
            something else than :func:`reserve` writes them).
    """
    key = reservation_key(keys, order_id)
    skus: list[str] = []
    for _ in range(2):
        script_keys = [key, *(stock_key(keys, sku) for sku in skus)]
        state, *rest = await _settle(redis, script_keys, [action, message_id, *skus])
        if state != "lines":
            return Settled(state, rest[0] == message_id)
        skus = list(rest)
    raise StreamcartError(f"the lines of reservation {order_id!r} changed while it was settled")


async def levels(redis: Redis, keys: Keys, skus: list[str]) -> list[Level]:
    async with redis.pipeline(transaction=False) as pipe:
        for sku in skus:
            pipe.hgetall(stock_key(keys, sku))
        found = await pipe.execute()
    return [
        Level(sku=sku, **{field: int(value) for field, value in stock.items()})
        for sku, stock in zip(skus, found, strict=True)
    ]


def _shortages(text: str) -> list[Shortage]:
    result = []
    for item in text.split():
        sku, _, counts = item.partition("=")
        wanted, _, available = counts.partition("/")
        result.append(Shortage(sku=sku, requested=int(wanted), available=int(available)))
    return result


def _levels(text: str) -> dict[str, int]:
    return {sku: int(count) for sku, _, count in (item.partition("=") for item in text.split())}
