"""A pool tells a crash loop from a child that worked: only a child that
consumed before it died comes back at once; one that never got that far (a
black-holed Redis, say) backs off longer each time, however long it lived."""

from __future__ import annotations

import time
from multiprocessing.synchronize import Event

from streamcart.bus.pool import ChildMain, Pool

LIVES_S = 0.3


def _dies_without_consuming(*args: object) -> None:
    time.sleep(LIVES_S)


def _dies_after_consuming(*args: object) -> None:
    ready = args[-1]
    assert isinstance(ready, Event)
    ready.set()
    time.sleep(LIVES_S)


def _failures_of_three_exits(entry: ChildMain) -> list[int]:
    """The slot's failure count after each of three exits, restarting at once."""
    workers = Pool({"x": 1}, "redis://127.0.0.1:1", entry=entry, healthy_after_s=LIVES_S / 3)
    slot = workers.slots[0]
    failures: list[int] = []
    workers._start(slot)
    try:
        deadline = time.monotonic() + 60
        while len(failures) < 3 and time.monotonic() < deadline:
            workers._supervise()
            if slot.process is None:  # it has just exited
                failures.append(slot.failures)
                assert slot.restart_at > time.monotonic() - 0.1
                slot.restart_at = 0.0  # skip the backoff itself: only its growth matters
                workers._supervise()
            time.sleep(0.02)
    finally:
        workers._stop_all()
    return failures


def test_a_child_that_never_consumed_backs_off_more_each_time() -> None:
    assert _failures_of_three_exits(_dies_without_consuming) == [1, 2, 3]


def test_a_child_that_consumed_before_dying_comes_back_at_once() -> None:
    assert _failures_of_three_exits(_dies_after_consuming) == [1, 1, 1]
