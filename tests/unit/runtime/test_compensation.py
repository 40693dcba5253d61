"""Compensation undoes completed steps in reverse; an undone effect gets a new generation, a failed undo keeps it."""

from __future__ import annotations

from types import SimpleNamespace

from runtime_fakes import Recorder, delivery

from esb.errors import PermanentError
from esb.message import Message
from esb.runtime import compensation
from esb.runtime.attempt import Attempt
from esb.runtime.middleware import Hooks


class Ledger:
    """An adapter that records each compensating call and fails the operations it is told to."""

    def __init__(self, failing=()):
        self.calls, self.failing = [], set(failing)

    def call(self, operation, message, idempotency_key):
        self.calls.append((operation, message.body, idempotency_key))
        if operation in self.failing:
            raise PermanentError("404 Not Found")
        return message


def direct(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def step(label, undo):
    return SimpleNamespace(label=label, adapter="ledger", compensate=undo)


def attempt_with(*labels, generations=None):
    a = Attempt("r", delivery("m-1"), "m-1", "w:1")
    a.generations = dict(generations or {})
    for label in labels:
        message = Message({"done": label}, message_id="m-1")
        a.compensations.append(compensation.record(step(label, f"undo_{label}"), message, f"m-1:{label}"))
    return a


def test_completed_steps_are_undone_in_reverse_order_with_their_keys():
    ledger, recorder = Ledger(), Recorder()
    summary, generations = compensation.compensate(attempt_with("voucher", "entries"), lambda _: ledger, direct,
                                                   Hooks([recorder]))
    assert summary == "ok"
    assert ledger.calls == [("undo_entries", {"done": "entries"}, "m-1:entries:compensate"),
                            ("undo_voucher", {"done": "voucher"}, "m-1:voucher:compensate")]
    assert generations == {"entries": 2, "voucher": 2}
    assert recorder.named("on_compensated") == [{"step": "entries", "error": None},
                                                {"step": "voucher", "error": None}]


def test_a_successful_undo_raises_that_steps_generation_from_where_it_was():
    _, generations = compensation.compensate(attempt_with("voucher", generations={"voucher": 2, "other": 5}),
                                             lambda _: Ledger(), direct, Hooks())
    assert generations == {"voucher": 3, "other": 5}


def test_a_failed_undo_keeps_its_generation_and_says_which_step_failed_and_why():
    ledger = Ledger(failing={"undo_voucher"})
    a = attempt_with("voucher", "entries")
    summary, generations = compensation.compensate(a, lambda _: ledger, direct, Hooks())
    assert summary == "failed: voucher: 404 Not Found"
    assert generations == {"entries": 2}  # voucher keeps generation 1: its effect is still there
    assert len(ledger.calls) == 2  # a failure does not stop the other undos
    assert a.generations == {}  # the attempt itself is not changed


def test_nothing_to_undo_says_none():
    assert compensation.compensate(attempt_with(generations={"x": 2}), lambda _: Ledger(), direct, Hooks()) == (
        "none", {"x": 2})


def test_a_record_keeps_what_undoing_the_step_needs():
    entry = compensation.record(step("voucher", "cancel_voucher"), Message({"no": 1}, message_id="m-1"), "m-1:v:g2")
    assert entry == {"step": "voucher", "adapter": "ledger", "operation": "cancel_voucher", "key": "m-1:v:g2",
                     "body": '{"no":1}', "content_type": "application/json", "message_id": "m-1"}
