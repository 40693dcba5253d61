"""Finisher: `done` for confirmed messages written together, then each acked; never acked unwritten."""

from __future__ import annotations

import threading

from esb.runtime.broker import Delivery
from esb.runtime.finisher import Finisher
from esb.store import LeaseLost, StoreUnavailable


class Store:
    """Answers finish_many as told; records what it was asked."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def finish_many(self, route, finished):
        self.calls.append((route, list(finished)))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer(finished)


class Runner:
    """The route runner's side: what it acks (and after how many store calls), what it requeues."""

    def __init__(self, store):
        self.store, self.events, self.settled = store, [], threading.Semaphore(0)

    def acked(self, delivery, **facts):
        self.events.append(("ack", delivery.message_id, len(self.store.calls)))
        self.settled.release()

    def give_back(self, failed):
        for delivery, _ in failed:
            self.events.append(("reject", delivery.message_id, True))
            self.settled.release()


def run(store, count):
    runner = Runner(store)
    settled = runner.settled
    worker = Finisher("oa-expense-to-voucher", store, runner.acked, runner.give_back)
    for i in range(count):  # queued before the thread starts: one batch
        worker.finish(Delivery(b"{}", "application/json", {}, f"m-{i}", "q", False, i), f"C-{i}", "w1", {})
    worker.start()
    for _ in range(count):
        assert settled.acquire(timeout=5), "a message was never settled"
    worker.stop(5)
    return runner.events


def test_messages_are_finished_in_one_store_call_and_acked_after_it():
    store = Store(lambda finished: [None] * len(finished))
    events = run(store, 3)
    assert [(route, [key for key, _, _ in items]) for route, items in store.calls] == [
        ("oa-expense-to-voucher", ["C-0", "C-1", "C-2"])]
    assert events == [("ack", "m-0", 1), ("ack", "m-1", 1), ("ack", "m-2", 1)]


def test_a_message_whose_lease_was_lost_is_given_back_and_the_others_acked():
    store = Store(lambda finished: [None, LeaseLost("C-1 is now in progress (owner w2)"), None])
    events = run(store, 3)
    assert sorted(events) == [("ack", "m-0", 1), ("ack", "m-2", 1), ("reject", "m-1", True)]


def test_when_the_store_fails_every_message_is_given_back_and_none_acked():
    events = run(Store(StoreUnavailable("the idempotency store var/idempotency.sqlite3 failed: disk I/O error")), 2)
    assert sorted(events) == [("reject", "m-0", True), ("reject", "m-1", True)]
