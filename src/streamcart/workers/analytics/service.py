"""The analytics service: what the shop is doing, from every event it publishes.

Each shop topic is subscribed whole (``order.*``, ``payment.*``, ...): every
message is counted by type in its minute. A few types add more: captures and
refunds move the GMV, confirmed orders the units sold and the unique buyers,
product views the most viewed and the unique viewers. ``analytics.report``
answers the numbers of the last minutes and of all time.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.workers import events
from streamcart.workers.analytics import buckets, report, store

SERVICE = "analytics"
TOPICS = (
    "order", "payment", "product", "user", "inventory",
    "shipment", "review", "cart", "survey", "moderation",
)  # fmt: skip
DAY_S = 24 * 3600


class AnalyticsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Live knobs (``streamcart config set analytics ...``)."""

    # How long a minute's counters live after its last write; a report's
    # window (at most a day) needs every minute in it.
    bucket_ttl_s: Annotated[int, msgspec.Meta(ge=DAY_S)] = 2 * DAY_S
    top: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10  # entries of the top lists


class ReportRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 60


def _settings(ctx: Context) -> AnalyticsSettings:
    config = ctx.config
    return config if isinstance(config, AnalyticsSettings) else AnalyticsSettings()


def _count(ctx: Context) -> int:
    """Count the message in its minute; returns the minute."""
    minute = buckets.minute_of(ctx.message.id)
    store.count(ctx, ctx.message.type, minute, _settings(ctx).bucket_ttl_s)
    return minute


def build(options: ServiceOptions | None = None) -> Service:
    """The analytics service."""
    service = Service(SERVICE, options=options, settings=AnalyticsSettings)

    async def any_event(msg: dict[str, Any], ctx: Context) -> None:
        _count(ctx)

    for topic in TOPICS:
        service.on(f"{topic}.*")(any_event)

    @service.on(events.PAYMENT_CAPTURED)
    async def captured(msg: events.PaymentCaptured, ctx: Context) -> None:
        minute = _count(ctx)
        store.add_gmv(ctx, minute, msg.currency, msg.amount, _settings(ctx).bucket_ttl_s)

    @service.on(events.PAYMENT_REFUNDED)
    async def refunded(msg: events.PaymentRefunded, ctx: Context) -> None:
        minute = _count(ctx)
        store.add_gmv(ctx, minute, msg.currency, -msg.amount, _settings(ctx).bucket_ttl_s)

    @service.on(events.ORDER_CONFIRMED)
    async def confirmed(msg: events.OrderConfirmed, ctx: Context) -> None:
        _count(ctx)
        units: dict[str, int] = {}
        for line in msg.items:
            if line.qty > 0:
                units[line.sku] = units.get(line.sku, 0) + line.qty
        store.add_sale(ctx, msg.user_id, units)

    @service.on(events.PRODUCT_VIEWED)
    async def viewed(msg: events.ProductViewed, ctx: Context) -> None:
        _count(ctx)
        store.add_view(ctx, msg.sku, msg.user_id)

    @service.on("analytics.report")
    async def get_report(msg: ReportRequest, ctx: Context) -> report.Report:
        """The last ``minutes`` minutes, up to the current one, and all time."""
        minutes = buckets.window(msg.minutes, buckets.now_ms())
        return report.build(await store.snapshot(ctx, minutes, _settings(ctx).top))

    return service
