"""The service's state: counters, GMV, top products and unique users.

Every write goes through ``ctx.tx``, so a message is counted together with
its dedup marker: a redelivered or republished message (same id) is not
counted twice within the dedup window. Keys (under ``{<ns>:analytics}``):

* ``counts:<minute>`` hash: message type -> messages in that minute (its first
  second, Unix time); expires ``bucket_ttl_s`` after its last write.
* ``counts:all`` hash: message type -> messages ever.
* ``gmv:<minute>``, ``gmv:all`` hashes: currency -> captured minus refunded,
  in minor units.
* ``top:units`` / ``top:views`` sorted sets: sku -> units confirmed / views.
* ``buyers`` / ``viewers`` HyperLogLogs: the user ids that confirmed an order /
  viewed a product.
"""

from __future__ import annotations

from collections.abc import Mapping

from streamcart.bus.context import Context
from streamcart.workers.analytics.report import Snapshot

ALL = "all"


def count(ctx: Context, message_type: str, minute: int, ttl_s: int) -> None:
    bucket = ctx.key("counts", str(minute))
    ctx.tx.hincrby(bucket, message_type, 1)
    ctx.tx.expire(bucket, ttl_s)
    ctx.tx.hincrby(ctx.key("counts", ALL), message_type, 1)


def add_gmv(ctx: Context, minute: int, currency: str, amount: int, ttl_s: int) -> None:
    """Add ``amount`` (negative for a refund) to the currency's GMV."""
    bucket = ctx.key("gmv", str(minute))
    ctx.tx.hincrby(bucket, currency, amount)
    ctx.tx.expire(bucket, ttl_s)
    ctx.tx.hincrby(ctx.key("gmv", ALL), currency, amount)


def add_sale(ctx: Context, user_id: str, units: Mapping[str, int]) -> None:
    for sku, qty in units.items():
        ctx.tx.zincrby(ctx.key("top", "units"), qty, sku)
    ctx.tx.pfadd(ctx.key("buyers"), user_id)


def add_view(ctx: Context, sku: str, user_id: str | None) -> None:
    ctx.tx.zincrby(ctx.key("top", "views"), 1, sku)
    if user_id:
        ctx.tx.pfadd(ctx.key("viewers"), user_id)


async def snapshot(ctx: Context, minutes: list[int], top: int) -> Snapshot:
    """Everything a report needs, in one round trip."""
    pipe = ctx.redis.pipeline(transaction=False)
    for minute in minutes:
        pipe.hgetall(ctx.key("counts", str(minute)))
        pipe.hgetall(ctx.key("gmv", str(minute)))
    pipe.hgetall(ctx.key("counts", ALL))
    pipe.hgetall(ctx.key("gmv", ALL))
    pipe.zrevrange(ctx.key("top", "units"), 0, top - 1, withscores=True)
    pipe.zrevrange(ctx.key("top", "views"), 0, top - 1, withscores=True)
    pipe.pfcount(ctx.key("buyers"))
    pipe.pfcount(ctx.key("viewers"))
    results = await pipe.execute()
    per_minute, rest = results[: 2 * len(minutes)], results[2 * len(minutes) :]
    counts_all, gmv_all, top_units, top_views, buyers, viewers = rest
    return Snapshot(
        minutes=minutes,
        counts=[_ints(part) for part in per_minute[0::2]],
        gmv=[_ints(part) for part in per_minute[1::2]],
        counts_all=_ints(counts_all),
        gmv_all=_ints(gmv_all),
        top_units=[(sku, int(units)) for sku, units in top_units],
        top_views=[(sku, int(views)) for sku, views in top_views],
        buyers=int(buyers),
        viewers=int(viewers),
    )


def _ints(fields: Mapping[str, str]) -> dict[str, int]:
    return {name: int(value) for name, value in sorted(fields.items())}
