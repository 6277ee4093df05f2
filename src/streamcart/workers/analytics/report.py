"""The ``analytics.report`` reply, built from what the store read.

Pure, so the arithmetic (window sums, net GMV, the funnel) is tested
without Redis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec

from streamcart.workers import events
from streamcart.workers.analytics import buckets


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The stored numbers a report is made of; ``counts`` and ``gmv`` are per
    bucket of ``minutes``, oldest first."""

    minutes: list[int]
    counts: list[dict[str, int]]
    gmv: list[dict[str, int]]
    counts_all: dict[str, int]
    gmv_all: dict[str, int]
    top_units: list[tuple[str, int]]
    top_views: list[tuple[str, int]]
    buyers: int
    viewers: int


class Funnel(msgspec.Struct, frozen=True, kw_only=True):
    """How far shoppers get: views, checkouts, orders and how the orders end."""

    product_views: int
    cart_checkouts: int
    orders_placed: int
    orders_confirmed: int
    orders_completed: int
    orders_rejected: int
    payments_failed: int
    orders_cancelled: int


class Minute(msgspec.Struct, frozen=True):
    minute: str  # ISO 8601 UTC, the minute's first second
    counts: dict[str, int]  # message type -> messages
    gmv: dict[str, int]  # currency -> net amount, minor units


class TopProduct(msgspec.Struct, frozen=True):
    sku: str
    units: int


class TopViewed(msgspec.Struct, frozen=True):
    sku: str
    views: int


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """The last ``window_minutes``; ``gmv``, ``funnel``, the tops and the
    unique counts are all time, ``*_window`` the same numbers in the window."""

    window_minutes: int
    totals_by_type: dict[str, int]
    per_minute: list[Minute]
    gmv: dict[str, int]
    gmv_window: dict[str, int]
    funnel: Funnel
    funnel_window: Funnel
    top_products: list[TopProduct]
    top_viewed: list[TopViewed]
    unique_buyers: int
    unique_viewers: int


def funnel(counts: Mapping[str, int]) -> Funnel:
    """The funnel from message counts by type."""
    return Funnel(
        product_views=counts.get(events.PRODUCT_VIEWED, 0),
        cart_checkouts=counts.get(events.CART_CHECKED_OUT, 0),
        orders_placed=counts.get(events.ORDER_PLACED, 0),
        orders_confirmed=counts.get(events.ORDER_CONFIRMED, 0),
        orders_completed=counts.get(events.ORDER_COMPLETED, 0),
        orders_rejected=counts.get(events.ORDER_REJECTED, 0),
        payments_failed=counts.get(events.PAYMENT_FAILED, 0),
        orders_cancelled=counts.get(events.ORDER_CANCELLED, 0),
    )


def build(snapshot: Snapshot) -> Report:
    totals = _sum(snapshot.counts)
    return Report(
        window_minutes=len(snapshot.minutes),
        totals_by_type=totals,
        per_minute=[
            Minute(buckets.iso(minute), counts, gmv)
            for minute, counts, gmv in zip(
                snapshot.minutes, snapshot.counts, snapshot.gmv, strict=True
            )
        ],
        gmv=snapshot.gmv_all,
        gmv_window=_sum(snapshot.gmv),
        funnel=funnel(snapshot.counts_all),
        funnel_window=funnel(totals),
        top_products=[TopProduct(sku, units) for sku, units in snapshot.top_units],
        top_viewed=[TopViewed(sku, views) for sku, views in snapshot.top_views],
        unique_buyers=snapshot.buyers,
        unique_viewers=snapshot.viewers,
    )


def _sum(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(sorted(total.items()))
