"""The payments service: charges a reserved order once, refunds a cancelled one.

Its part of the saga (contract section 4): ``inventory.reserved`` is charged
through the provider (``payment.captured`` / ``payment.failed``);
``order.cancelled`` refunds a captured payment (``payment.refunded``) or, if
the charge has not happened yet, makes sure it never will. Every provider call
uses the order id as idempotency key, goes through a circuit breaker, and
takes a token from a rate limit all instances share, so the provider sees at
most ``provider_rate`` calls a second from the whole shop.

Only the provider's own answer fails a payment: a decline, or a charge that
timed out ``charge_attempts`` times and that a look-up by idempotency key
does not find. An open breaker, a rate limit that does not yield a token in
time and server errors are the provider being unavailable, not the shopper's
fault: the message is redelivered later (after the breaker's cool-down) and
the charge tried again, within the saga's retry budget (:mod:`streamcart.workers.saga`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec

from streamcart.bus.context import Context
from streamcart.bus.options import ServiceOptions
from streamcart.bus.service import Service
from streamcart.errors import NotFoundError, TransientError, UnavailableError
from streamcart.resilience.breaker import Breakers
from streamcart.resilience.ratelimit import RateLimit, RateLimitedError, TokenBucket
from streamcart.workers import events
from streamcart.workers.payments.provider import (
    CAPTURED,
    Charge,
    ProviderTimeoutError,
    SandboxProvider,
    SandboxSettings,
)
from streamcart.workers.saga import SAGA_RETRIES

SERVICE = "payments"
PROVIDER = "provider:sandbox"
CAPTURED_STATUS, FAILED, REFUNDED_STATUS = "CAPTURED", "FAILED", "REFUNDED"


class PaymentsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Live knobs (``streamcart config set payments sandbox '{"decline_rate": 0.1}'``)."""

    sandbox: SandboxSettings = msgspec.field(default_factory=SandboxSettings)
    # Calls to the provider per second from every instance together.
    provider_rate: RateLimit = msgspec.field(default_factory=lambda: RateLimit(200, 400))
    # How long a call waits for a token of that rate; past it, the message is
    # redelivered when the bucket will have one.
    provider_wait_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    # Tries of one charge in a row (timeouts and server errors), with this pause
    # between them; a charge that timed out this often in all is failed.
    charge_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    retry_pause_ms: Annotated[int, msgspec.Meta(ge=0)] = 100


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    """What payments knows of one order's money."""

    order_id: str
    status: str = ""  # CAPTURED, FAILED, REFUNDED; "" before any charge
    payment_id: str = ""
    amount: int = 0
    refunded: int = 0
    currency: str = ""
    method: str = ""
    reason: str = ""
    code: str = ""
    cancelled: bool = False


class GetPayment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    order_id: str


def build(options: ServiceOptions | None = None, *, breakers: Breakers | None = None) -> Service:
    """The payments service, on the sandbox provider."""
    service = Service(SERVICE, options=options or SAGA_RETRIES, settings=PaymentsSettings)
    own_breakers = breakers or Breakers()

    def settings_of(ctx: Context) -> PaymentsSettings:
        settings: PaymentsSettings = ctx.config or PaymentsSettings()
        return settings

    def provider_of(ctx: Context) -> SandboxProvider:
        return SandboxProvider(ctx.redis, ctx.keys, settings_of(ctx).sandbox)

    def breakers_of(ctx: Context) -> Breakers:
        # The consumer's breakers are reported to `streamcart status`.
        return ctx.rpc.breakers if ctx.rpc is not None and ctx.rpc.breakers else own_breakers

    async def provider_call(ctx: Context, call: str, key: str, **kwargs: Any) -> object:
        """One provider call through the shared rate limit and the breaker."""
        settings = settings_of(ctx)
        bucket = TokenBucket(ctx.redis, ctx.keys, "payments:provider")
        await bucket.wait("all", settings.provider_rate, timeout_s=settings.provider_wait_s)
        provider = provider_of(ctx)
        method = getattr(provider, call)
        return await breakers_of(ctx).get(PROVIDER).call(method, key, **kwargs)

    async def charge(ctx: Context, msg: events.InventoryReserved) -> Charge | events.PaymentFailed:
        """The provider's answer, or why there is none after every try timed out.

        A timeout means the charge may or may not have happened, so the
        provider is asked by idempotency key before anything is decided.

        Raises:
            TransientError: the provider is unavailable for now (breaker open,
                no rate-limit token in time, server errors, timeouts left to
                try): the message is redelivered, after the wait it names.
        """
        settings = settings_of(ctx)
        timeouts_key = ctx.key("charge-timeouts")
        timeouts = int(await ctx.redis.hget(timeouts_key, msg.order_id) or 0)
        if timeouts >= settings.charge_attempts:
            # The last look-up was refused (the breaker those timeouts opened): ask again.
            return await look_up(ctx, msg.order_id) or gave_up(msg.order_id, timeouts)
        error: TransientError | None = None
        for attempt in range(1, settings.charge_attempts + 1):
            try:
                answer = await provider_call(
                    ctx, "charge", msg.order_id, amount=msg.total, currency=msg.currency,
                    method=msg.payment_method, token=msg.payment_token,
                )  # fmt: skip
                assert isinstance(answer, Charge)
                return answer
            except (UnavailableError, RateLimitedError):
                raise  # not a try: redelivered once the breaker or the bucket lets us
            except ProviderTimeoutError as exc:
                # Counted at once, outside the handler's commit: the tries add up
                # across redeliveries (the breaker these timeouts open sends the
                # message away between them), so a charge never answered ends.
                timeouts = int(await ctx.redis.hincrby(timeouts_key, msg.order_id, 1))
                known = await look_up(ctx, msg.order_id)
                if known is not None:
                    return known  # it did charge; only the answer was lost
                if timeouts >= settings.charge_attempts:
                    return gave_up(msg.order_id, timeouts)
                error = exc
            except TransientError as exc:
                error = exc
            if attempt < settings.charge_attempts:
                await asyncio.sleep(settings.retry_pause_ms / 1000 * attempt)
        assert error is not None
        raise error

    def gave_up(order_id: str, timeouts: int) -> events.PaymentFailed:
        reason = f"the payment provider did not answer ({timeouts} tries timed out)"
        return events.PaymentFailed(order_id=order_id, reason=reason, code="timeout")

    async def look_up(ctx: Context, order_id: str) -> Charge | None:
        """The provider's answer under the order's idempotency key, if it gave one."""
        known = await provider_call(ctx, "find", order_id)
        assert known is None or isinstance(known, Charge)
        return known

    @service.on(events.INVENTORY_RESERVED)
    async def on_reserved(msg: events.InventoryReserved, ctx: Context) -> None:
        key = ctx.key("payment", msg.order_id)
        await ctx.watch(key)  # a cancel committed meanwhile makes us run again
        payment = await load(ctx, msg.order_id)
        if payment.status:
            return  # decided already
        if payment.cancelled:
            # Cancelled before we charged; a charge that got through before the
            # cancel (we crashed, or lost the race) is refunded.
            await refund_if_charged(ctx, payment)
            return
        answer = await charge(ctx, msg)
        if isinstance(answer, events.PaymentFailed):
            failed(ctx, payment, answer)
        elif answer.status != CAPTURED:
            failed(ctx, payment, events.PaymentFailed(
                order_id=msg.order_id, reason=answer.message or "declined", code="declined",
            ))  # fmt: skip
        else:
            captured(ctx, payment, answer, msg.order_id)

    def failed(ctx: Context, payment: Payment, why: events.PaymentFailed) -> None:
        save(ctx, msgspec.structs.replace(payment, status=FAILED, reason=why.reason, code=why.code))
        ctx.tx.hdel(ctx.key("charge-timeouts"), payment.order_id)
        ctx.publish(events.PAYMENT_FAILED, why, key=payment.order_id)

    def captured(ctx: Context, payment: Payment, answer: Charge, order_id: str) -> Payment:
        done = msgspec.structs.replace(
            payment, status=CAPTURED_STATUS, payment_id=answer.payment_id, amount=answer.amount,
            currency=answer.currency, method=answer.method,
        )  # fmt: skip
        save(ctx, done)
        ctx.tx.hdel(ctx.key("charge-timeouts"), order_id)
        event = events.PaymentCaptured(
            order_id=order_id, payment_id=answer.payment_id, amount=answer.amount,
            currency=answer.currency, method=answer.method,
        )  # fmt: skip
        ctx.publish(events.PAYMENT_CAPTURED, event, key=order_id)
        return done

    async def refund_if_charged(ctx: Context, payment: Payment) -> None:
        answer = await provider_of(ctx).find(payment.order_id)
        if answer is None or answer.status != CAPTURED:
            return
        if payment.status != CAPTURED_STATUS:
            payment = captured(ctx, payment, answer, payment.order_id)
        await refund(ctx, payment, answer)

    async def refund(ctx: Context, payment: Payment, answer: Charge) -> None:
        await provider_call(ctx, "refund", f"refund:{payment.order_id}", charge=answer)
        save(ctx, msgspec.structs.replace(payment, status=REFUNDED_STATUS, refunded=answer.amount,
                                          cancelled=True))  # fmt: skip
        event = events.PaymentRefunded(
            order_id=payment.order_id, payment_id=answer.payment_id, amount=answer.amount,
            currency=answer.currency,
        )  # fmt: skip
        ctx.publish(events.PAYMENT_REFUNDED, event, key=payment.order_id)

    @service.on(events.ORDER_CANCELLED)
    async def on_cancelled(msg: events.OrderCancelled, ctx: Context) -> None:
        key = ctx.key("payment", msg.order_id)
        await ctx.watch(key)
        payment = await load(ctx, msg.order_id)
        if payment.status == REFUNDED_STATUS or payment.cancelled:
            return
        if payment.status == CAPTURED_STATUS:
            answer = await provider_of(ctx).find(msg.order_id)
            if answer is not None:
                await refund(ctx, payment, answer)
                return
        # Not charged (yet): the charge handler sees this and stays away.
        save(ctx, msgspec.structs.replace(payment, cancelled=True))
        ctx.tx.hdel(ctx.key("charge-timeouts"), msg.order_id)

    @service.on("payments.get")
    async def get(msg: GetPayment, ctx: Context) -> Payment:
        """The order's payment.

        Raises:
            NotFoundError: payments has not heard of the order.
        """
        payment = await load(ctx, msg.order_id)
        if not payment.status and not payment.cancelled:
            raise NotFoundError(f"no payment for order {msg.order_id!r}")
        return payment

    return service


async def load(ctx: Context, order_id: str) -> Payment:
    raw = await ctx.redis.get(ctx.key("payment", order_id))
    return Payment(order_id=order_id) if raw is None else msgspec.json.decode(raw, type=Payment)


def save(ctx: Context, payment: Payment) -> None:
    ctx.tx.set(ctx.key("payment", payment.order_id), msgspec.json.encode(payment))
