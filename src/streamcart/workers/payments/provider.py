"""Payment providers, and the sandbox one the shop runs with.

A provider charges and refunds under an idempotency key: asking twice with
the same key returns the first answer and moves money once, which is what
lets a worker that crashed mid-charge simply ask again. The sandbox keeps its
own ledger in Redis, apart from the payments service's state, as a real
provider would; the invariant checks compare the two.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import NoReturn, Protocol

import msgspec
from redis.asyncio import Redis

from streamcart.bus.keys import Keys
from streamcart.bus.scripts import Arg, Script
from streamcart.errors import TransientError

CAPTURED, DECLINED, REFUNDED = "captured", "declined", "refunded"
_record = Script("record.lua", "streamcart.workers.payments")
# Magic tokens, as payment sandboxes have them.
TOKEN_DECLINED, TOKEN_TIMEOUT = "tok_declined", "tok_timeout"


class ProviderTimeoutError(TransientError):
    """The provider did not answer in time; the charge may or may not have happened."""


class ProviderError(TransientError):
    """The provider answered with a server error."""


class ProviderDownError(ProviderError):
    """The provider cannot be reached at all (an outage): nothing was done."""


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer to a charge: captured or declined."""

    status: str
    payment_id: str
    amount: int
    currency: str
    method: str
    message: str = ""
    at_ms: int = 0


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    refund_id: str
    payment_id: str
    amount: int
    currency: str
    at_ms: int = 0


class SandboxSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the sandbox misbehaves: shares of charges declined, timed out or
    failed, and its answering time.

    ``timeout_after_charge_rate`` is the share of charges whose answer is lost
    after the money moved: the call times out although the charge happened (a
    repeated call under the same key times out the same way), which only a
    look-up by idempotency key tells. ``down`` refuses every call, look-ups and
    refunds too, as an outage does.
    """

    decline_rate: float = 0.0
    timeout_rate: float = 0.0
    failure_rate: float = 0.0
    timeout_after_charge_rate: float = 0.0
    down: bool = False
    latency_ms: int = 0
    timeout_ms: int = 1_000


class Provider(Protocol):
    async def charge(
        self, key: str, *, amount: int, currency: str, method: str, token: str
    ) -> Charge: ...

    async def refund(self, key: str, charge: Charge) -> Refund: ...

    async def find(self, key: str) -> Charge | None: ...


class SandboxProvider:
    """A provider on Redis: a hash of answers by idempotency key and a ledger stream."""

    def __init__(self, redis: Redis, keys: Keys, settings: SandboxSettings | None = None) -> None:
        self.redis = redis
        self.settings = settings or SandboxSettings()
        tag = f"{{{keys.namespace}:payment-provider}}"
        self.charges_key = f"{tag}:charges"
        self.refunds_key = f"{tag}:refunds"
        self.ledger_key = f"{tag}:ledger"

    async def charge(
        self, key: str, *, amount: int, currency: str, method: str, token: str
    ) -> Charge:
        """Charge ``amount`` once per ``key``.

        Raises:
            ProviderTimeoutError: no answer within ``timeout_ms``: ``tok_timeout``
                always and ``timeout_rate`` of the others, with nothing charged;
                ``timeout_after_charge_rate`` of them after the charge was made.
            ProviderError: a server error (``failure_rate``), or the provider is
                ``down`` (:class:`ProviderDownError`). Nothing was charged.
        """
        settings = self.settings
        lost = settings.timeout_after_charge_rate
        charged_and_lost = bool(lost) and random.random() < lost
        known = await self.find(key)
        if known is not None:
            if charged_and_lost:
                await self._lose_answer()
            return known
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        if token == TOKEN_TIMEOUT or random.random() < settings.timeout_rate:
            await asyncio.sleep(settings.timeout_ms / 1000)
            raise ProviderTimeoutError(
                f"the payment provider did not answer in {settings.timeout_ms} ms"
            )
        if random.random() < settings.failure_rate:
            raise ProviderError("the payment provider answered 500")
        declined = token == TOKEN_DECLINED or random.random() < settings.decline_rate
        charge = Charge(
            status=DECLINED if declined else CAPTURED, payment_id=f"pay_{uuid.uuid4().hex[:20]}",
            amount=amount, currency=currency, method=method,
            message="card declined by the issuer" if declined else "", at_ms=_now_ms(),
        )  # fmt: skip
        # The first answer under a key wins, also between two racing callers.
        ledger: dict[str, object] = {} if declined else {
            "payment_id": charge.payment_id, "amount": amount, "currency": currency,
        }  # fmt: skip
        kept = await self._record(
            self.charges_key, key, charge, "capture" if ledger else "", ledger
        )
        if charged_and_lost:
            await self._lose_answer()
        return msgspec.json.decode(kept, type=Charge)

    async def _lose_answer(self) -> NoReturn:
        """Raises ProviderTimeoutError: the answer was given but never reaches the caller."""
        await asyncio.sleep(self.settings.timeout_ms / 1000)
        raise ProviderTimeoutError(
            f"the payment provider did not answer in {self.settings.timeout_ms} ms"
        )

    async def refund(self, key: str, charge: Charge) -> Refund:
        """Refund ``charge`` in full, once per ``key``.

        Raises:
            ProviderDownError: the provider is ``down``; nothing was refunded.
        """
        self._check_up()
        known = await self.redis.hget(self.refunds_key, key)
        if known is not None:
            return msgspec.json.decode(known, type=Refund)
        refund = Refund(
            refund_id=f"re_{uuid.uuid4().hex[:20]}", payment_id=charge.payment_id,
            amount=charge.amount, currency=charge.currency, at_ms=_now_ms(),
        )  # fmt: skip
        ledger: dict[str, object] = {
            "payment_id": charge.payment_id, "amount": charge.amount, "currency": charge.currency,
        }  # fmt: skip
        kept = await self._record(self.refunds_key, key, refund, "refund", ledger)
        return msgspec.json.decode(kept, type=Refund)

    async def ledger(self) -> list[dict[str, str]]:
        """Every movement of money, oldest first (for audits and tests)."""
        return [fields for _, fields in await self.redis.xrange(self.ledger_key)]

    async def _record(
        self, answers: str, key: str, answer: Charge | Refund, kind: str, ledger: dict[str, object]
    ) -> str:
        args: list[Arg] = [key, msgspec.json.encode(answer), kind]
        for name, value in ledger.items():
            args += (name, str(value))
        return str(await _record(self.redis, [answers, self.ledger_key], args))

    async def find(self, key: str) -> Charge | None:
        """The answer already given under ``key``, if any.

        Raises:
            ProviderDownError: the provider is ``down``.
        """
        self._check_up()
        known = await self.redis.hget(self.charges_key, key)
        return None if known is None else msgspec.json.decode(known, type=Charge)

    def _check_up(self) -> None:
        if self.settings.down:
            raise ProviderDownError("the payment provider is down (connection refused)")


def _now_ms() -> int:
    return int(time.time() * 1000)
