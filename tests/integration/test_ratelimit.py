"""The token bucket on a real server: many clients, two processes, skewed host clocks.

Bucket 20, refill 10/s. Whoever asks and however often, the admitted count
over a window of ``t`` seconds of Redis time is within one token of
``20 + 10 * t``. The window is bracketed with Redis ``TIME`` read around it:
the first request runs after ``start`` and before the first answer is read;
the last one (a refusal, after a final drain) between ``end_before`` and
``end_after``.
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgspec
import pytest
from redis.asyncio import Redis

from streamcart.bus.connection import connect
from streamcart.bus.keys import Keys
from streamcart.resilience import RateLimit, TokenBucket
from tests.integration.support import REPO_ROOT, child_env

LIMIT = RateLimit(rate=10, burst=20)
NAME = "provider"
SUBJECT = "all"
HAMMER_S = 3.0
_CHILD = (
    "import asyncio, sys\n"
    "from tests.integration.test_ratelimit import child_main\n"
    "asyncio.run(child_main(*sys.argv[1:]))\n"
)


class Hammered(msgspec.Struct, frozen=True):
    """What one process's clients were admitted, and the Redis time (us) just
    after the first of them had an answer."""

    admitted: int
    first_answer_us: int


async def redis_now_us(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1_000_000 + int(micros)


async def hammer(
    redis: Redis, namespace: str, *, clients: int, start_us: int, duration_s: float
) -> Hammered:
    """``clients`` concurrent callers asking for a token back to back for
    ``duration_s``, from the moment Redis time reaches ``start_us``."""
    bucket = TokenBucket(redis, Keys(namespace), NAME)
    # The margin covers the host timer waking a little before Redis time gets there.
    await asyncio.sleep(max(0, start_us - await redis_now_us(redis)) / 1e6 + 0.01)
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + duration_s
    first_answers: list[int] = []

    async def client() -> int:
        admitted = int((await bucket.acquire(SUBJECT, LIMIT)).allowed)
        first_answers.append(await redis_now_us(redis))
        while loop.time() < stop_at:
            admitted += (await bucket.acquire(SUBJECT, LIMIT)).allowed
        return admitted

    counts = await asyncio.gather(*(client() for _ in range(clients)))
    return Hammered(sum(counts), min(first_answers))


async def child_main(url: str, namespace: str, clients: str, start_us: str) -> None:
    """Entry point of a second process: hammer, then print the result as JSON."""
    redis = connect(url)
    try:
        result = await hammer(
            redis, namespace, clients=int(clients), start_us=int(start_us), duration_s=HAMMER_S
        )
    finally:
        await redis.aclose()
    sys.stdout.write(msgspec.json.encode(result).decode())


async def drain(redis: Redis, namespace: str) -> tuple[int, int, int]:
    """Take tokens until refused, so the last request leaves less than one.

    Returns (admitted, Redis time before, Redis time after) in microseconds.
    """
    bucket = TokenBucket(redis, Keys(namespace), NAME)
    before = await redis_now_us(redis)
    admitted = 0
    while (await bucket.acquire(SUBJECT, LIMIT)).allowed:
        admitted += 1
    return admitted, before, await redis_now_us(redis)


def check_bound(admitted: int, first_at: tuple[int, int], last_at: tuple[int, int]) -> str:
    """Assert the admitted count is within one token of ``burst + rate * t``."""
    t_min = (last_at[0] - first_at[1]) / 1e6
    t_max = (last_at[1] - first_at[0]) / 1e6
    low = LIMIT.burst + LIMIT.rate * t_min - 1
    high = LIMIT.burst + LIMIT.rate * t_max + 1
    report = (
        f"admitted {admitted}, t in [{t_min:.4f}, {t_max:.4f}] s, bound [{low:.2f}, {high:.2f}]"
    )
    assert low <= admitted <= high, report
    return report


async def test_fifty_clients_on_one_bucket_get_burst_plus_rate_times_t(
    real_redis: Redis, namespace: str
) -> None:
    start = await redis_now_us(real_redis)
    result = await hammer(real_redis, namespace, clients=50, start_us=start, duration_s=HAMMER_S)
    drained, end_before, end_after = await drain(real_redis, namespace)

    report = check_bound(
        result.admitted + drained, (start, result.first_answer_us), (end_before, end_after)
    )
    print(f"one process, 50 clients: {report}")  # shown with -rP


async def test_two_processes_share_one_bucket(
    real_redis: Redis, redis_url: str, namespace: str
) -> None:
    # Both start at the same Redis time, after their interpreters are up.
    start = await redis_now_us(real_redis) + 2_000_000
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            redis_url,
            namespace,
            "25",
            str(start),
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = []
    for child in children:
        out, err = await asyncio.wait_for(child.communicate(), 30)
        assert child.returncode == 0, err.decode()
        results.append(msgspec.json.decode(out, type=Hammered))
    drained, end_before, end_after = await drain(real_redis, namespace)

    per_process = [r.admitted for r in results]
    assert all(per_process), per_process  # both really took part
    first_answer = min(r.first_answer_us for r in results)
    admitted = sum(r.admitted for r in results) + drained
    report = check_bound(admitted, (start, first_answer), (end_before, end_after))
    print(f"two processes, 25 clients each: {report}, per process {per_process}")


class JumpingClock:
    """A wall clock an hour further on at every reading.

    The wall clock is the one that differs between hosts; a monotonic clock
    means nothing on another host, and faking it would only break the
    client's own socket timeouts.
    """

    def __init__(self) -> None:
        self.readings = 0
        self.base = time.time()

    def __call__(self) -> float:
        self.readings += 1
        return self.base + 3600.0 * self.readings


async def test_the_host_clock_does_not_matter(
    real_redis: Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = RateLimit(rate=1, burst=3)
    bucket = TokenBucket(real_redis, Keys(namespace), NAME)
    clock = JumpingClock()
    try:
        monkeypatch.setattr(time, "time", clock)
        monkeypatch.setattr(time, "time_ns", lambda: int(clock() * 1e9))
        decisions = []
        for _ in range(6):
            decisions.append(await bucket.acquire("skewed", limit))
            time.time()  # an hour later, as far as this host can tell
    finally:
        monkeypatch.undo()

    assert clock.readings >= 6
    assert [d.allowed for d in decisions] == [True, True, True, False, False, False]
    # Hours of host time passed, yet the bucket still waits on Redis time.
    assert all(500 < d.retry_after_ms <= 1000 for d in decisions[3:])
