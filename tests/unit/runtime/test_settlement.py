"""The Settler ends each delivery exactly once: ack, skip, retry, dead letter or give-back."""

from __future__ import annotations

import time

import pytest
from runtime_fakes import Recorder, RecordingBroker, RecordingStore, delivery

from esb.errors import NotConfirmed, TransientError
from esb.runtime import settlement
from esb.runtime.attempt import Attempt
from esb.runtime.broker import Outgoing
from esb.runtime.lanes import Timer
from esb.runtime.middleware import Hooks
from esb.runtime.settlement import SettledTwice, Settler

STATE = Outgoing(b"{}", "application/json", {"x-esb-attempt": 2}, "m-1")


@pytest.fixture
def timer():
    timer = Timer()
    yield timer
    timer.stop(run_pending=False)


def setup(timer, broker=None):
    broker = broker or RecordingBroker()
    store, recorder, settled = RecordingStore(broker), Recorder(), []
    settler = Settler("r", broker, Hooks([recorder]), store, timer, lambda: settled.append(1))
    return settler, broker, store, recorder, settled


def attempt(message_id="m-1", claimed=True):
    a = Attempt("r", delivery(message_id), message_id, "w:1")
    a.key, a.claimed = "s:C-1", claimed
    return a


def retry(settler, a):
    settler.retry(a, "r.retry.1000ms", STATE, reason="transient", delay_ms=1000, next_attempt=2, resume_step=1)


def dead_letter(settler, a):
    settler.dead_letter(a, "r.dlq", STATE, {"post": 2}, step="post", error_class="permanent",
                        compensation="ok", reason="400")


@pytest.mark.parametrize("first, second", [
    ("ack", "ack"), ("ack", "skip"), ("skip", "retry"), ("retry", "dead_letter"), ("dead_letter", "ack")])
def test_settling_a_delivery_twice_raises_settled_twice(timer, first, second):
    settler, broker, *_ = setup(timer)
    ends = {"ack": lambda a: settler.ack(a), "skip": lambda a: settler.skip(a, reason="done"),
            "retry": lambda a: retry(settler, a), "dead_letter": lambda a: dead_letter(settler, a)}
    a = attempt()
    ends[first](a)
    with pytest.raises(SettledTwice, match="message m-1 of route r was settled already"):
        ends[second](a)
    assert broker.kinds().count("ack") == 1


def test_retry_publishes_to_the_tier_then_releases_the_claim_then_acks(timer):
    settler, broker, store, recorder, settled = setup(timer)
    retry(settler, attempt())
    assert broker.events[0][:2] == ("publish", "r.retry.1000ms") and broker.events[0][2] is STATE
    assert store.calls == [("release", "s:C-1", ["publish"])]  # released after the publish, before the ack
    assert broker.kinds() == ["publish", "ack"]
    assert recorder.named("on_retry") == [dict(reason="transient", delay_ms=1000, next_attempt=2, resume_step=1)]
    assert recorder.named("after_message") == [{"outcome": "retried"}] and settled == [1]


def test_retry_waits_for_the_confirm_before_acking(timer, monkeypatch):
    confirm = settlement.confirm
    monkeypatch.setattr(settlement, "confirm", lambda outputs: confirm(outputs, timeout=0.2))
    broker = RecordingBroker(confirms=False)
    settler, _, store, *_ = setup(timer, broker)
    a = attempt()
    with pytest.raises(TransientError, match="did not confirm"):
        retry(settler, a)
    assert broker.kinds() == ["publish"] and store.calls == [] and not a.settled


def test_a_refused_retry_confirm_leaves_the_delivery_unsettled_so_the_caller_gives_it_back(timer):
    settler, broker, store, recorder, _ = setup(timer, RecordingBroker(refuse=NotConfirmed("nacked")))
    a = attempt()
    with pytest.raises(TransientError, match="nacked") as caught:
        retry(settler, a)
    assert caught.value.step == "retry"
    assert broker.kinds() == ["publish"] and not a.settled and a.claimed and recorder.calls == []
    settler.give_back(a, caught.value)
    assert store.calls[0][:2] == ("release", "s:C-1")
    assert recorder.named("after_message") == [{"outcome": "given_back"}]


def test_dead_letter_marks_the_key_dead_with_its_generations_before_acking(timer):
    settler, broker, store, recorder, _ = setup(timer)
    a = attempt()
    dead_letter(settler, a)
    assert broker.kinds() == ["publish", "ack"]
    assert store.calls == [("mark_dead", "s:C-1", {"post": 2}, ["publish"])]
    assert not a.claimed
    assert recorder.named("on_dead_letter") == [dict(step="post", error_class="permanent", compensation="ok",
                                                     reason="400")]


def test_a_dead_letter_of_an_unclaimed_delivery_writes_nothing_to_the_store(timer):
    settler, broker, store, *_ = setup(timer)
    dead_letter(settler, attempt(claimed=False))
    assert broker.kinds() == ["publish", "ack"] and store.calls == []


def test_a_store_failure_while_dead_lettering_leaves_the_delivery_unsettled(timer):
    settler, broker, store, *_ = setup(timer)

    def down(*_args, **_kw):
        raise TransientError("store down")
    store.mark_dead = down
    a = attempt()
    with pytest.raises(TransientError):
        dead_letter(settler, a)
    assert "ack" not in broker.kinds() and not a.settled


def test_give_back_releases_the_claim_and_requeues_only_after_the_pause(timer, monkeypatch):
    monkeypatch.setattr(settlement, "FIRST_PAUSE", 0.3)
    settler, broker, store, recorder, settled = setup(timer)
    a = attempt()
    started = time.monotonic()
    settler.give_back(a, TransientError("confirm lost"))
    assert store.calls[0][:2] == ("release", "s:C-1") and not a.claimed
    assert broker.kinds() == [] and settled == [1]
    assert broker.wait_for("reject")
    assert time.monotonic() - started >= 0.3
    assert broker.events == [("reject", "m-1", True)]
    assert recorder.named("on_give_back")[0]["pause"] == 0.3


def test_the_pause_doubles_each_time_the_same_message_is_given_back(timer, monkeypatch):
    monkeypatch.setattr(settlement, "FIRST_PAUSE", 10.0)
    monkeypatch.setattr(settlement, "MAX_PAUSE", 35.0)
    settler, _, _, recorder, _ = setup(timer)
    for _ in range(4):
        settler.give_back(attempt("m-1"), TransientError("x"))
    settler.give_back(attempt("m-2"), TransientError("x"))
    assert [f["pause"] for f in recorder.named("on_give_back")] == [10.0, 20.0, 35.0, 35.0, 10.0]


def test_a_message_counts_as_given_back_until_it_is_acked(timer):
    settler, *_ = setup(timer)
    assert not settler.was_given_back("m-1")
    settler.give_back(attempt(), TransientError("x"))
    assert settler.was_given_back("m-1")
    settler.ack(attempt())
    assert not settler.was_given_back("m-1")


def test_a_settled_delivery_is_not_given_back(timer):
    settler, broker, store, recorder, settled = setup(timer)
    a = attempt()
    settler.ack(a)
    settler.give_back(a, TransientError("late"))
    assert broker.kinds() == ["ack"] and store.calls == [] and recorder.named("on_give_back") == []


def test_ack_and_skip_call_their_hooks_with_the_facts(timer):
    settler, broker, _, recorder, settled = setup(timer)
    settler.ack(attempt("m-1"), outputs=2, filtered=False)
    settler.skip(attempt("m-2"), reason="done")
    assert broker.events == [("ack", "m-1"), ("ack", "m-2")]
    assert recorder.named("on_ack") == [{"outputs": 2, "filtered": False}]
    assert recorder.named("on_skip") == [{"reason": "done"}]
    assert recorder.named("after_message") == [{"outcome": "acked"}, {"outcome": "skipped"}]
    assert settled == [1, 1]


@pytest.mark.parametrize("second", ["retry", "dead_letter"])
def test_settling_a_settled_delivery_again_publishes_nothing(timer, second):
    settler, broker, store, *_ = setup(timer)
    a = attempt()
    settler.ack(a)
    with pytest.raises(SettledTwice):
        retry(settler, a) if second == "retry" else dead_letter(settler, a)
    assert broker.kinds() == ["ack"] and store.calls == []


def test_a_message_given_back_more_than_a_thousand_times_is_still_requeued_after_the_longest_pause(timer):
    settler, _, _, recorder, _ = setup(timer)  # e.g. the store was down for a day
    for _ in range(1100):
        settler.give_back(attempt("m-1"), TransientError("store down"))
    assert recorder.named("on_give_back")[-1]["pause"] == settlement.MAX_PAUSE
    assert [f["outcome"] for f in recorder.named("after_message")] == ["given_back"] * 1100
