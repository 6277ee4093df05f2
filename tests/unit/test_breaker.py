"""The circuit breaker: window, opening, cool-down, trials, fallbacks and settings."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest

from streamcart.errors import CircuitOpenError, NotFoundError, UnavailableError
from streamcart.resilience.breaker import Breakers, BreakerSettings, BreakerState, CircuitBreaker

SETTINGS = BreakerSettings(window_s=10, min_calls=4, failure_rate=0.5, cool_down_s=5)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


class Target:
    """A stand-in for a remote service: counts calls, fails on demand."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    async def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("payments", SETTINGS, clock=clock, wall_clock=lambda: 1.7e9)


async def fail(breaker: CircuitBreaker, times: int) -> None:
    target = Target()
    target.error = ConnectionError("refused")
    for _ in range(times):
        with pytest.raises(ConnectionError):
            await breaker.call(target)


async def succeed(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert await breaker.call(Target()) == "ok"


async def open_breaker(breaker: CircuitBreaker) -> None:
    await fail(breaker, SETTINGS.min_calls)
    assert breaker.state == "open"


async def test_a_call_passes_its_arguments_and_returns_the_result(
    breaker: CircuitBreaker,
) -> None:
    assert await breaker.call(Target(), "paid") == "paid"
    assert await breaker.call(Target(), value="kw") == "kw"
    assert breaker.state == "closed"


async def test_stays_closed_below_min_calls(breaker: CircuitBreaker) -> None:
    await fail(breaker, SETTINGS.min_calls - 1)
    assert breaker.state == "closed"
    assert breaker.snapshot().failures == SETTINGS.min_calls - 1


async def test_opens_when_the_failure_rate_is_reached(breaker: CircuitBreaker) -> None:
    await succeed(breaker, 3)
    await fail(breaker, 2)
    assert breaker.state == "closed"  # 2 of 5 failed: below half
    await fail(breaker, 1)
    assert breaker.state == "open"  # 3 of 6
    assert breaker.snapshot() == BreakerState(
        target="payments", state="open", failures=3, calls=6, opened_at=1.7e9, retry_after_s=5
    )


async def test_fails_fast_while_open_without_calling_the_target(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await open_breaker(breaker)
    clock.tick(1.8)
    target = Target()
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(target)
    assert target.calls == 0
    error = caught.value
    assert (error.target, error.retry_after_s) == ("payments", pytest.approx(3.2))
    assert str(error) == "payments is unavailable: circuit open, retry in 3.2 s"
    # An open breaker is the target being unavailable: retried, after the cool-down.
    assert isinstance(error, UnavailableError) and error.delay_ms == 3200
    assert not breaker.allow()


async def test_the_fallback_answers_when_open(breaker: CircuitBreaker) -> None:
    await open_breaker(breaker)
    target = Target()
    seen: list[Exception] = []

    def cached(exc: Exception) -> str:
        seen.append(exc)
        return "cached"

    assert await breaker.call(target, fallback=cached) == "cached"
    assert target.calls == 0
    assert isinstance(seen[0], CircuitOpenError)


async def test_the_fallback_answers_when_the_call_fails(breaker: CircuitBreaker) -> None:
    target = Target()
    target.error = ConnectionError("refused")

    async def degraded(exc: Exception) -> str:
        return f"degraded: {exc}"

    assert await breaker.call(target, fallback=degraded) == "degraded: refused"
    assert breaker.snapshot().failures == 1  # still counted against the target


async def test_the_fallback_does_not_hide_an_answer(breaker: CircuitBreaker) -> None:
    target = Target()
    target.error = NotFoundError("no such order")
    with pytest.raises(NotFoundError):
        await breaker.call(target, fallback=lambda exc: "cached")


async def test_half_opens_after_the_cool_down(breaker: CircuitBreaker, clock: Clock) -> None:
    await open_breaker(breaker)
    clock.tick(4.9)
    assert breaker.state == "open"
    clock.tick(0.1)
    assert breaker.state == "half_open"
    assert breaker.snapshot().retry_after_s == 0


async def test_a_successful_trial_closes_it(breaker: CircuitBreaker, clock: Clock) -> None:
    await open_breaker(breaker)
    clock.tick(5)
    target = Target()
    assert await breaker.call(target) == "ok"
    assert target.calls == 1
    state = breaker.snapshot()
    assert (state.state, state.calls, state.failures, state.opened_at) == ("closed", 0, 0, None)
    # A fresh window: the failures that opened it do not count any more.
    await fail(breaker, SETTINGS.min_calls - 1)
    assert breaker.state == "closed"


async def test_it_takes_half_open_calls_successes_to_close(clock: Clock) -> None:
    settings = msgspec.structs.replace(SETTINGS, half_open_calls=2)
    breaker = CircuitBreaker("payments", settings, clock=clock)
    await open_breaker(breaker)
    clock.tick(5)
    await succeed(breaker, 1)
    assert breaker.state == "half_open"
    await succeed(breaker, 1)
    assert breaker.state == "closed"


async def test_a_failed_trial_reopens_it(breaker: CircuitBreaker, clock: Clock) -> None:
    await open_breaker(breaker)
    clock.tick(5)
    await fail(breaker, 1)
    assert breaker.state == "open"
    assert breaker.snapshot().retry_after_s == 5  # a whole new cool-down
    clock.tick(5)
    assert breaker.state == "half_open"


async def test_only_half_open_calls_trials_run_at_once(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await open_breaker(breaker)
    clock.tick(5)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "ok"

    trial = asyncio.create_task(breaker.call(slow))
    await started.wait()
    second = Target()
    with pytest.raises(CircuitOpenError) as caught:
        await breaker.call(second)
    assert second.calls == 0
    assert str(caught.value) == "payments is unavailable: circuit half-open, retry in 5.0 s"
    release.set()
    assert await trial == "ok"
    assert breaker.state == "closed"


async def test_old_outcomes_leave_the_window(breaker: CircuitBreaker, clock: Clock) -> None:
    await fail(breaker, 3)
    clock.tick(9.9)
    assert breaker.snapshot().failures == 3
    clock.tick(0.1)
    assert breaker.snapshot().calls == 0
    await fail(breaker, 1)
    assert breaker.state == "closed"  # 1 call in the window, not 4


async def test_the_window_holds_a_bounded_number_of_buckets(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(1000):
        clock.tick(0.01)
        breaker.record_success()
    assert breaker.snapshot().calls == 1000
    assert len(breaker._window._buckets) <= 21


async def test_permanent_errors_are_answers_not_failures(breaker: CircuitBreaker) -> None:
    target = Target()
    target.error = NotFoundError("no such payment")
    for _ in range(SETTINGS.min_calls * 2):
        with pytest.raises(NotFoundError):
            await breaker.call(target)
    state = breaker.snapshot()
    assert (state.state, state.calls, state.failures) == ("closed", 8, 0)


async def test_the_caller_decides_what_is_a_failure(clock: Clock) -> None:
    breaker = CircuitBreaker(
        "provider:alipay",
        SETTINGS,
        clock=clock,
        is_failure=lambda exc: not isinstance(exc, LookupError),
    )
    target = Target()
    target.error = KeyError("declined")
    for _ in range(SETTINGS.min_calls):
        with pytest.raises(KeyError):
            await breaker.call(target)
    assert breaker.state == "closed"


async def test_cancellation_does_not_count(breaker: CircuitBreaker) -> None:
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    for _ in range(SETTINGS.min_calls):
        started.clear()
        task = asyncio.create_task(breaker.call(hang))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert breaker.snapshot().calls == 0


async def test_a_cancelled_trial_frees_its_slot(breaker: CircuitBreaker, clock: Clock) -> None:
    await open_breaker(breaker)
    clock.tick(5)
    started = asyncio.Event()

    async def hang() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(breaker.call(hang, fallback=lambda exc: "fallback"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "half_open"
    await succeed(breaker, 1)
    assert breaker.state == "closed"


async def test_a_call_from_before_a_transition_does_not_settle_the_next_state(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        raise ConnectionError("late")

    late = asyncio.create_task(breaker.call(slow))
    await started.wait()
    await open_breaker(breaker)
    clock.tick(5)
    assert breaker.allow()  # takes the only trial slot
    release.set()
    with pytest.raises(ConnectionError):
        await late
    assert breaker.state == "half_open"  # the late failure did not re-open it
    breaker.record_success()
    assert breaker.state == "closed"


async def test_record_and_allow_for_callers_without_a_coroutine(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    for _ in range(SETTINGS.min_calls):
        assert breaker.allow()
        breaker.record_failure()
    assert not breaker.allow()
    breaker.record_success()  # ignored while open
    clock.tick(5)
    assert breaker.allow()
    assert not breaker.allow()  # the one trial slot is taken
    breaker.record_success()
    assert breaker.state == "closed"


async def test_update_applies_new_thresholds_and_keeps_the_state(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await fail(breaker, 2)
    breaker.update(msgspec.structs.replace(SETTINGS, min_calls=2))
    assert breaker.state == "closed"  # a threshold is checked at the next failure
    await fail(breaker, 1)
    assert breaker.state == "open"
    clock.tick(1)
    assert breaker.state == "open"
    breaker.update(msgspec.structs.replace(SETTINGS, min_calls=2, cool_down_s=1))
    assert breaker.state == "half_open"  # the shorter cool-down is already over


async def test_each_transition_is_logged_once(
    breaker: CircuitBreaker, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamcart.breaker")
    await open_breaker(breaker)
    await breaker.call(Target(), fallback=lambda exc: "x")
    clock.tick(5)
    for _ in range(3):
        assert breaker.state == "half_open"
    await succeed(breaker, 2)
    assert [r.getMessage() for r in caplog.records] == [
        "circuit for payments opened: 4 of the last 4 calls failed within 10 s; "
        "calls fail fast for 5 s",
        "circuit for payments half-open: letting trial calls through",
        "circuit for payments closed: trial calls succeeded",
    ]


async def test_breakers_share_settings_per_target(clock: Clock) -> None:
    breakers = Breakers(SETTINGS, clock=clock)
    payments = breakers.get("payments")
    assert breakers.get("payments") is payments
    await open_breaker(payments)
    alipay = breakers.get("provider:alipay")
    assert [(s.target, s.state) for s in breakers.snapshots()] == [
        ("payments", "open"),
        ("provider:alipay", "closed"),
    ]
    faster = msgspec.structs.replace(SETTINGS, cool_down_s=1)
    clock.tick(1)
    breakers.update(faster)
    assert payments.settings == alipay.settings == breakers.get("later").settings == faster
    assert payments.state == "half_open"


def test_default_settings_are_valid() -> None:
    assert BreakerSettings() == msgspec.convert({}, BreakerSettings)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("window_s", 0, "window_s must be a number of seconds above 0, got 0"),
        ("cool_down_s", -1.5, "cool_down_s must be a number of seconds above 0, got -1.5"),
        ("window_s", float("inf"), "window_s must be a number of seconds above 0, got inf"),
        ("min_calls", 0, "min_calls must be at least 1, got 0"),
        ("failure_rate", 0, "failure_rate must be above 0 and at most 1, got 0"),
        ("failure_rate", 1.5, "failure_rate must be above 0 and at most 1, got 1.5"),
        ("half_open_calls", 0, "half_open_calls must be at least 1, got 0"),
    ],
)
def test_settings_validation_names_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        BreakerSettings(**{field: value})  # type: ignore[arg-type]
    # The config store validates with msgspec.convert, which keeps the message.
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert({field: value}, BreakerSettings)
