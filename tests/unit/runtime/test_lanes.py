"""Lanes keep a slow item to its own lane; the Timer runs delayed work, and pending work at stop."""

from __future__ import annotations

import threading
import time

from esb.runtime.lanes import Lanes, Timer


def test_a_slow_item_in_one_lane_does_not_hold_up_items_in_the_other():
    lanes = Lanes("t", 2)
    lanes.start()
    release, done = threading.Event(), threading.Event()
    fast = []
    lanes.put(lambda: release.wait(5))
    for i in range(5):
        lanes.put(lambda i=i: fast.append(i))
    lanes.put(done.set)
    try:
        assert done.wait(2), "the free lane did not take the other items"
        assert fast == [0, 1, 2, 3, 4]
    finally:
        release.set()
        lanes.stop(2)


def test_stop_returns_within_its_timeout_even_when_an_item_hangs():
    lanes = Lanes("t", 2)
    lanes.start()
    hang = threading.Event()
    lanes.put(lambda: hang.wait(30))
    time.sleep(0.05)
    started = time.monotonic()
    lanes.stop(0.3)
    assert time.monotonic() - started < 1.0
    hang.set()


def test_an_item_put_while_every_lane_sleeps_is_run():
    lanes = Lanes("t", 2)
    lanes.start()
    time.sleep(0.05)  # both lanes asleep
    ran = threading.Event()
    lanes.put(ran.set)
    assert ran.wait(2)
    lanes.stop(2)


def test_the_timer_runs_work_after_its_delay_and_not_before():
    timer = Timer()
    ran_at = []
    done = threading.Event()
    started = time.monotonic()
    timer.after(0.2, lambda: (ran_at.append(time.monotonic() - started), done.set()))
    assert done.wait(2)
    timer.stop()
    assert ran_at[0] >= 0.2


def test_the_timer_runs_earlier_deadlines_first():
    timer = Timer()
    order, done = [], threading.Event()
    timer.after(0.2, lambda: (order.append("late"), done.set()))
    timer.after(0.05, lambda: order.append("early"))
    assert done.wait(2)
    timer.stop()
    assert order == ["early", "late"]


def test_stopping_the_timer_runs_pending_work_at_once():
    timer = Timer()
    ran = []
    timer.after(60, lambda: ran.append("give back"))
    started = time.monotonic()
    timer.stop()
    assert ran == ["give back"] and time.monotonic() - started < 2


def test_stopping_the_timer_without_running_pending_work_drops_it():
    timer = Timer()
    ran = []
    timer.after(60, lambda: ran.append("x"))
    timer.stop(run_pending=False)
    assert ran == []


def test_one_failing_job_does_not_stop_the_timer():
    timer = Timer()
    done = threading.Event()

    def fail():
        raise RuntimeError("boom")
    timer.after(0.01, fail)
    timer.after(0.05, done.set)
    assert done.wait(2)
    timer.stop()
