"""Circuit breakers: stop calling a target that keeps failing, and try again later.

A breaker is *closed* while its target behaves: calls go through and their
outcomes are counted over a sliding window. When at least ``min_calls`` calls
ended in the window and the share of failures reaches ``failure_rate``, it
*opens*: calls fail fast with :class:`~streamcart.errors.CircuitOpenError`
without reaching the target. After ``cool_down_s`` it is *half-open*: up to
``half_open_calls`` trial calls go through at once; that many successes close
it again, one failure re-opens it for another cool-down.

A breaker lives in one event loop and holds no lock: its state only changes
between awaits.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

import msgspec

from streamcart.errors import CircuitOpenError, PermanentError

log = logging.getLogger("streamcart.breaker")

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]
Fallback = Callable[[Exception], Awaitable[T] | T]
FailurePredicate = Callable[[BaseException], bool]

CLOSED: State = "closed"
OPEN: State = "open"
HALF_OPEN: State = "half_open"
# The window is kept as this many time buckets at most, so memory does not grow
# with the call rate; an outcome leaves it up to window_s / _BUCKETS early.
_BUCKETS = 20


class BreakerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """When a breaker opens and how it recovers; shared by the breakers of a process."""

    # Outcomes older than this no longer count.
    window_s: float = 10.0
    # Fewer calls than this in the window never open the breaker: two failures
    # out of three calls say little.
    min_calls: int = 10
    # Open when failures / calls in the window reach this.
    failure_rate: float = 0.5
    # How long an open breaker refuses calls before it lets trials through.
    cool_down_s: float = 5.0
    # Trial calls allowed at once when half-open; that many successes close it.
    half_open_calls: int = 1

    def __post_init__(self) -> None:
        for name in ("window_s", "cool_down_s"):
            seconds = getattr(self, name)
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{name} must be a number of seconds above 0, got {seconds!r}")
        if self.min_calls < 1:
            raise ValueError(f"min_calls must be at least 1, got {self.min_calls!r}")
        if not 0 < self.failure_rate <= 1:
            raise ValueError(
                f"failure_rate must be above 0 and at most 1, got {self.failure_rate!r}"
            )
        if self.half_open_calls < 1:
            raise ValueError(f"half_open_calls must be at least 1, got {self.half_open_calls!r}")


class BreakerState(msgspec.Struct, frozen=True, kw_only=True):
    """What a breaker looks like now, as ``streamcart status`` shows it.

    ``failures`` and ``calls`` count the current window; ``opened_at`` is the
    Unix time the breaker last opened (``None`` while it has never opened or
    since it closed again); ``retry_after_s`` is the cool-down left while open.
    """

    target: str
    state: State
    failures: int
    calls: int
    opened_at: float | None
    retry_after_s: float


def not_permanent(exc: BaseException) -> bool:
    """The default failure test: a :class:`PermanentError` ("not found",
    "invalid") is an answer from a working target, anything else is a failure."""
    return not isinstance(exc, PermanentError)


class CircuitBreaker:
    """The breaker of one target, such as ``"payments"`` or ``"provider:alipay"``.

    ``is_failure`` tells which exceptions are the target's fault; the others
    count as successes, since the target did answer. Cancellation never counts
    either way. ``clock`` (monotonic seconds) drives the window and cool-down;
    ``wall_clock`` only stamps ``opened_at`` for display.
    """

    def __init__(
        self,
        target: str,
        settings: BreakerSettings | None = None,
        *,
        is_failure: FailurePredicate = not_permanent,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self.settings = settings or BreakerSettings()
        self._is_failure = is_failure
        self._clock = clock
        self._wall_clock = wall_clock
        self._state: State = CLOSED
        self._window = _Window()
        self._opened_at = 0.0
        self._opened_at_wall: float | None = None
        self._trials = 0
        self._trial_successes = 0
        # Bumped on every transition, so a call that started before one does
        # not settle the state that followed it.
        self._generation = 0

    @property
    def state(self) -> State:
        """``"closed"``, ``"open"`` or ``"half_open"``, as of now."""
        self._advance(self._clock())
        return self._state

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        fallback: Fallback[T] | None = None,
        **kwargs: Any,
    ) -> T:
        """``await fn(*args, **kwargs)`` through the breaker.

        With a ``fallback``, its result (awaited when it is awaitable) is
        returned instead of raising, both when the breaker refuses the call
        (it gets the :class:`CircuitOpenError`) and when ``fn`` fails (it gets
        that exception). An exception that is not a failure is an answer, so it
        is raised as is, never replaced by the fallback. To pass ``fn`` an
        argument named ``fallback``, bind it first (``functools.partial``).

        Raises:
            CircuitOpenError: the breaker is open, or half-open with every
                trial slot taken, and no ``fallback`` was given; ``fn`` was
                not called.
            Exception: whatever ``fn`` raised, when it is not a failure or no
                ``fallback`` was given; cancellation always propagates.
        """
        permit = self._acquire()
        if permit is None:
            refused = self._refusal()
            if fallback is None:
                raise refused
            return await _resolve(fallback(refused))
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            failed = self._is_failure(exc)
            self._settle(permit, failed=failed)
            if not failed or fallback is None:
                raise
            return await _resolve(fallback(exc))
        except BaseException:
            # Cancelled (or the process is exiting): nothing learnt about the target.
            self._release(permit)
            raise
        self._settle(permit, failed=False)
        return result

    def allow(self) -> bool:
        """Whether a call may go to the target now.

        For callers that cannot hand over a coroutine: when half-open, a
        ``True`` takes a trial slot, so it must be followed by
        :meth:`record_success` or :meth:`record_failure`.
        """
        return self._acquire() is not None

    def record_success(self) -> None:
        """Count a call that the target answered (ignored while open)."""
        self._settle(self._current(), failed=False)

    def record_failure(self) -> None:
        """Count a call that failed because of the target (ignored while open)."""
        self._settle(self._current(), failed=True)

    def snapshot(self) -> BreakerState:
        """The state, the window's counts and the cool-down left."""
        now = self._clock()
        self._advance(now)
        self._window.prune(now, self.settings.window_s)
        return BreakerState(
            target=self.target,
            state=self._state,
            failures=self._window.failures,
            calls=self._window.calls,
            opened_at=self._opened_at_wall,
            retry_after_s=self._retry_after(now) if self._state == OPEN else 0.0,
        )

    def update(self, settings: BreakerSettings) -> None:
        """Apply new settings from now on, keeping the state and the window.

        A new threshold is checked at the next failure; a new cool-down
        applies to the current one as well.
        """
        if settings != self.settings:
            self.settings = settings
            self._advance(self._clock())

    def _acquire(self) -> int | None:
        """The current generation when a call may proceed, else ``None``."""
        self._advance(self._clock())
        if self._state == CLOSED:
            return self._generation
        if self._state == HALF_OPEN and self._trials < self.settings.half_open_calls:
            self._trials += 1
            return self._generation
        return None

    def _current(self) -> int:
        self._advance(self._clock())
        if self._state == HALF_OPEN and self._trials == 0:
            # An outcome reported without allow() still counts as a trial.
            self._trials = 1
        return self._generation

    def _release(self, permit: int) -> None:
        if permit == self._generation and self._state == HALF_OPEN:
            self._trials -= 1

    def _settle(self, permit: int, *, failed: bool) -> None:
        now = self._clock()
        if permit != self._generation:
            return
        if self._state == HALF_OPEN:
            self._trials -= 1
            if failed:
                self._open(now, "a trial call failed")
            else:
                self._trial_successes += 1
                if self._trial_successes >= self.settings.half_open_calls:
                    self._close()
        elif self._state == CLOSED:
            settings = self.settings
            window = self._window
            window.add(now, failed, settings.window_s)
            if (
                failed
                and window.calls >= settings.min_calls
                and window.failures / window.calls >= settings.failure_rate
            ):
                self._open(
                    now,
                    f"{window.failures} of the last {window.calls} calls failed "
                    f"within {settings.window_s:g} s",
                )

    def _advance(self, now: float) -> None:
        if self._state == OPEN and self._retry_after(now) <= 0:
            self._move(HALF_OPEN)
            log.info("circuit for %s half-open: letting trial calls through", self.target)

    def _open(self, now: float, why: str) -> None:
        self._move(OPEN)
        self._opened_at = now
        self._opened_at_wall = self._wall_clock()
        log.warning(
            "circuit for %s opened: %s; calls fail fast for %g s",
            self.target,
            why,
            self.settings.cool_down_s,
        )

    def _close(self) -> None:
        self._move(CLOSED)
        # The failures that opened it are history now; start counting afresh.
        self._window.clear()
        self._opened_at_wall = None
        log.info("circuit for %s closed: trial calls succeeded", self.target)

    def _move(self, state: State) -> None:
        self._state = state
        self._generation += 1
        self._trials = 0
        self._trial_successes = 0

    def _retry_after(self, now: float) -> float:
        return self._opened_at + self.settings.cool_down_s - now

    def _refusal(self) -> CircuitOpenError:
        if self._state == OPEN:
            return CircuitOpenError(self.target, retry_after_s=self._retry_after(self._clock()))
        # Half-open with the trial slots taken: if the trial fails, that is
        # another whole cool-down.
        return CircuitOpenError(
            self.target, retry_after_s=self.settings.cool_down_s, state=HALF_OPEN
        )


class Breakers:
    """The breakers of a process, one per target, made on first use with shared settings."""

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        *,
        is_failure: FailurePredicate = not_permanent,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or BreakerSettings()
        self._is_failure = is_failure
        self._clock = clock
        self._wall_clock = wall_clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, target: str) -> CircuitBreaker:
        """The breaker of ``target``, made closed if there is none yet."""
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = self._breakers[target] = CircuitBreaker(
                target,
                self.settings,
                is_failure=self._is_failure,
                clock=self._clock,
                wall_clock=self._wall_clock,
            )
        return breaker

    def snapshots(self) -> list[BreakerState]:
        """Every breaker's state, by target name."""
        return [self._breakers[target].snapshot() for target in sorted(self._breakers)]

    def update(self, settings: BreakerSettings) -> None:
        """Apply new settings to every breaker, and to those made later."""
        self.settings = settings
        for breaker in self._breakers.values():
            breaker.update(settings)


class _Bucket:
    __slots__ = ("calls", "failures", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.calls = 0
        self.failures = 0


class _Window:
    """Calls and failures over the last ``window_s`` seconds, in time buckets."""

    def __init__(self) -> None:
        self._buckets: deque[_Bucket] = deque()
        self.calls = 0
        self.failures = 0

    def add(self, now: float, failed: bool, window_s: float) -> None:
        self.prune(now, window_s)
        if not self._buckets or now - self._buckets[-1].start >= window_s / _BUCKETS:
            self._buckets.append(_Bucket(now))
        bucket = self._buckets[-1]
        bucket.calls += 1
        self.calls += 1
        if failed:
            bucket.failures += 1
            self.failures += 1

    def prune(self, now: float, window_s: float) -> None:
        while self._buckets and now - self._buckets[0].start >= window_s:
            old = self._buckets.popleft()
            self.calls -= old.calls
            self.failures -= old.failures

    def clear(self) -> None:
        self._buckets.clear()
        self.calls = 0
        self.failures = 0


async def _resolve(result: Awaitable[T] | T) -> T:
    """A fallback's result, awaited when it is awaitable (sync and async fallbacks)."""
    if inspect.isawaitable(result):
        return cast(T, await result)
    return result
