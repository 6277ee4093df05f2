"""`streamcart up` stops its helpers for good: one that ignores SIGTERM is
killed after the grace period, so nothing is left for exit to wait on."""

from __future__ import annotations

import multiprocessing
import signal
import time

from streamcart.cli import _stop_helpers


def _ignores_sigterm(ready: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()  # type: ignore[attr-defined]
    time.sleep(120)


def _stops_on_sigterm(ready: object) -> None:
    ready.set()  # type: ignore[attr-defined]
    time.sleep(120)


def test_a_helper_that_ignores_sigterm_is_killed_and_the_rest_stop() -> None:
    spawn = multiprocessing.get_context("spawn")
    stubborn_ready, polite_ready = spawn.Event(), spawn.Event()
    stubborn = spawn.Process(target=_ignores_sigterm, args=(stubborn_ready,), name="stubborn")
    polite = spawn.Process(target=_stops_on_sigterm, args=(polite_ready,), name="polite")
    for helper in (stubborn, polite):
        helper.start()
    assert stubborn_ready.wait(60) and polite_ready.wait(60)

    _stop_helpers([stubborn, polite], grace_s=1.0)

    assert not stubborn.is_alive() and stubborn.exitcode == -signal.SIGKILL
    assert not polite.is_alive() and polite.exitcode == -signal.SIGTERM
