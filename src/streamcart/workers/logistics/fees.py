"""Shipping fees and pickup points: pure rules over the live settings."""

from __future__ import annotations

import math
from typing import Annotated

import msgspec


class LogisticsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Live knobs (``streamcart config set logistics dispatch_after_ms 500``)."""

    dispatch_after_ms: Annotated[int, msgspec.Meta(ge=0)] = 2_000
    deliver_after_ms: Annotated[int, msgspec.Meta(ge=0)] = 3_000
    # How long after a stop (logistics.stop_shipment) shipment.cancelled follows:
    # best longer than a cancel's own retries take, or it beats them to the order.
    stop_notice_after_ms: Annotated[int, msgspec.Meta(ge=1)] = 2_000
    couriers: list[str] = msgspec.field(
        default_factory=lambda: ["SF Express", "JD Logistics", "YTO"]
    )
    # Base fee per zone and per started kilogram, in minor units.
    zone_fees: dict[str, int] = msgspec.field(
        default_factory=lambda: {"local": 600, "regional": 1_000, "national": 1_500}
    )
    default_zone_fee: int = 2_000
    per_kg_fee: int = 200
    currency: str = "CNY"
    # Weight assumed for a product the catalog cannot tell us about.
    default_weight_g: int = 500
    pickup_points: dict[str, list[str]] = msgspec.field(
        default_factory=lambda: {
            "shanghai": ["Jing'an Station locker", "People's Square kiosk"],
            "beijing": ["Chaoyang Joy City locker", "Zhongguancun kiosk"],
        }
    )


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    fee: int
    currency: str
    zone: str
    weight_g: int


def quote(settings: LogisticsSettings, weight_g: int, zone: str) -> Quote:
    """The fee of a parcel: the zone's base fee plus a fee per started kilogram
    beyond the first."""
    base = settings.zone_fees.get(zone.lower(), settings.default_zone_fee)
    extra_kg = max(0, math.ceil(max(weight_g, 0) / 1000) - 1)
    fee = base + extra_kg * settings.per_kg_fee
    return Quote(fee=fee, currency=settings.currency, zone=zone, weight_g=weight_g)


def pickup_point(settings: LogisticsSettings, city: str, order_id: str) -> str | None:
    """A pickup point in ``city``, spread over the city's points by order id."""
    points = settings.pickup_points.get(city.strip().lower())
    if not points:
        return None
    return points[sum(order_id.encode()) % len(points)]
