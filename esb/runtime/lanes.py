"""Where a route's work runs off the broker's thread: a fixed set of lanes, and one timer.

Lanes are the route's threads. The broker's thread only puts work on a `queue.SimpleQueue`, whose
put and get are C code: a put wakes one lane blocked in get (the lock handed straight to it, no
Python-level Condition and no second lock for the woken lane to contend for), and while the lanes
are busy it costs an append and no wake-up. The deque + Condition it replaced cost more, measured
on the I/O route at 64 lanes on 2 busy cores (python -m bench.iothreads, best of 4): 999 against 794 µs
CPU and 12-27 against 7-9 context switches per message. Each lane takes one item at a time, so a
slow message holds up only its own lane; the others go on with the rest. No thread is ever started
per message or per failure.

The timer runs delayed work (a give-back after its pause) on one thread per runtime, so that no
lane and no broker thread ever sleeps.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable

import structlog

Work = Callable[[], None]


class Lanes:
    def __init__(self, name: str, count: int):
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._loop, name=f"esb-{name}-{i}", daemon=True)
                         for i in range(count)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def put(self, work: Work) -> None:
        """From any thread; never blocks (the queue is unbounded)."""
        self._items.put(work)

    def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for _ in self._threads:
            self.put(None)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        take = self._items.get
        while True:
            work = take()
            if work is None:
                return
            _run_quietly(work)  # the runner's work catches what it must; a lane never dies of one item


class Timer:
    """Runs work after a delay, on one thread of its own."""

    def __init__(self, name: str = "esb-timer"):
        self._due: list = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def after(self, seconds: float, work: Work) -> None:
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + seconds, next(self._order), work))
            self._changed.notify()

    def stop(self, run_pending: bool = True) -> None:
        """Stop; pending work runs now (a give-back must not wait out its pause at shutdown)."""
        with self._changed:
            self._stopped = True
            pending, self._due = [w for _, _, w in sorted(self._due)] if run_pending else [], []
            self._changed.notify()
        self._thread.join(5)
        for work in pending:
            _run_quietly(work)

    def _loop(self) -> None:
        while True:
            with self._changed:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._stopped:
                    return
                _, _, work = heapq.heappop(self._due)
            _run_quietly(work)


def _run_quietly(work: Work) -> None:
    try:
        work()
    except Exception:  # noqa: BLE001 - one failed job must not stop its lane or the timer
        structlog.get_logger("esb.runtime").exception("background_work_failed")
