"""A supervised pool of worker processes, for one service or several.

``entry`` is the function each child runs (it must be importable by name, as
children are spawned); :func:`streamcart.app.worker_main` is the usual one.

Each child runs one consumer (see :mod:`streamcart.bus.worker`) under a pool
token that stays the same across its restarts, so a restarted child gets its
old consumer name back and first finishes its own pending entries. A child
that dies before it consumed for ``healthy_after_s`` is restarted with
exponential backoff; SIGTERM/SIGINT stops every
child gracefully, and kills what is still running after the grace period.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from types import FrameType

log = logging.getLogger("streamcart.pool")
_SPAWN = multiprocessing.get_context("spawn")
DEFAULT_CONCURRENCY = 32
# How long a stopping pool waits for its children to drain before killing them.
GRACE_S = 15.0


# The entry of a child: (spec, redis_url, namespace, concurrency, token, log level, metrics,
# an event the child sets once it consumes).
ChildMain = Callable[[str, str, str, int, str | None, int, bool, EventType | None], None]


class _Slot:
    def __init__(self, spec: str, index: int, token: str) -> None:
        self.spec = spec
        self.index = index
        self.token = token
        self.process: BaseProcess | None = None
        # Set by the child once it consumes: only a child that got that far and
        # then lived a while counts as healthy (one that hangs on a black-holed
        # Redis until it gives up is crash-looping, however long each try takes).
        self.ready = multiprocessing.get_context("spawn").Event()
        self.started = 0.0
        self.failures = 0
        self.restart_at = 0.0


class Pool:
    """Child processes per service: ``services`` maps a service spec to a count.

    ``concurrency`` is the handlers each child runs at once: one number for
    every service, or one per spec (a spec it leaves out gets
    ``DEFAULT_CONCURRENCY``).
    ``metrics`` is handed to every child's entry; ``on_child_exit`` gets the pid
    of every child reaped (so the metrics server can drop its live gauges).
    """

    def __init__(
        self,
        services: dict[str, int],
        redis_url: str,
        *,
        namespace: str = "sc",
        concurrency: int | Mapping[str, int] = DEFAULT_CONCURRENCY,
        entry: ChildMain,
        grace_s: float = GRACE_S,
        max_backoff_s: float = 30.0,
        healthy_after_s: float = 5.0,
        metrics: bool = False,
        on_child_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.concurrency = concurrency
        self.entry = entry
        self.grace_s = grace_s
        self.max_backoff_s = max_backoff_s
        self.healthy_after_s = healthy_after_s
        self.metrics = metrics
        self.on_child_exit = on_child_exit
        pool_id = uuid.uuid4().hex[:12]
        self.slots = [
            _Slot(spec, i, f"{pool_id}:{spec}:{i}")
            for spec, processes in services.items()
            for i in range(processes)
        ]
        self._stopping = False

    def run(self) -> None:
        """Supervise until SIGTERM or SIGINT, then stop the children."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self.slots:
                self._start(slot)
            while not self._stopping:
                self._supervise()
                time.sleep(0.2)
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def concurrency_of(self, spec: str) -> int:
        if isinstance(self.concurrency, int):
            return self.concurrency
        return self.concurrency.get(spec, DEFAULT_CONCURRENCY)

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.slots if s.process and s.process.pid]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _start(self, slot: _Slot) -> None:
        slot.ready.clear()
        process = _SPAWN.Process(
            target=self.entry,
            args=(
                slot.spec,
                self.redis_url,
                self.namespace,
                self.concurrency_of(slot.spec),
                slot.token,
                logging.getLogger().getEffectiveLevel(),
                self.metrics,
                slot.ready,
            ),
            name=f"streamcart-{slot.spec}-{slot.index}",
        )
        process.start()
        slot.process = process
        slot.started = time.monotonic()
        log.info("started %s worker %d (pid %s)", slot.spec, slot.index, process.pid)

    def _supervise(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            process = slot.process
            if process is not None and process.is_alive():
                if now - slot.started > 60 and slot.ready.is_set():
                    slot.failures = 0  # it has been healthy for a while
                continue
            if process is not None:
                process.join()
                self._exited(process)
                # A child that consumed a while before dying is not crash-looping
                # (the OOM killer, say): it comes back quickly, however often.
                if now - slot.started >= self.healthy_after_s and slot.ready.is_set():
                    slot.failures = 0
                slot.failures += 1
                backoff = min(self.max_backoff_s, 0.5 * 2 ** min(slot.failures - 1, 16))
                slot.restart_at = now + backoff
                slot.process = None
                log.warning(
                    "%s worker %d exited with code %s; restarting in %.1fs",
                    slot.spec,
                    slot.index,
                    process.exitcode,
                    backoff,
                )
            elif now >= slot.restart_at:
                self._start(slot)

    def _stop_all(self) -> None:
        running = [s.process for s in self.slots if s.process is not None and s.process.is_alive()]
        for process in running:
            process.terminate()  # SIGTERM: the child drains and exits
        deadline = time.monotonic() + self.grace_s
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
            self._exited(process)

    def _exited(self, process: BaseProcess) -> None:
        """Report a reaped child to ``on_child_exit``; a failing hook never stops supervision."""
        if self.on_child_exit is None or process.pid is None:
            return
        try:
            self.on_child_exit(process.pid)
        except Exception:
            log.exception("on_child_exit failed for pid %s", process.pid)
