"""A replay with the replay ledger, on the embedded broker: each dead letter goes back once; a message
that died again is a new dead letter; filters and a dry run select the same letters."""

from __future__ import annotations

import datetime
import uuid

import pytest

from esb.runtime import dlq, names
from esb.runtime.broker import Outgoing, QueueSpec, Topology
from esb.runtime.connect import connected
from esb.runtime.replays import ReplayLedger
from esb.runtime.state import Seal

SEAL = Seal(b"k" * 32)


class Bus:
    """The embedded broker (one per process: each test has a route of its own) and one route's DLQ."""

    def __init__(self, broker, route: str):
        self.broker, self.route = broker, route


@pytest.fixture
def bus():
    route = f"r-{uuid.uuid4().hex[:8]}"
    with connected("memory://") as broker:
        broker.declare(Topology(queues=(QueueSpec(route), QueueSpec(names.dead_letter_queue(route)))))
        yield Bus(broker, route)


def dead(bus, message_id: str, died: str, step: str = "post", error_class: str = "permanent") -> None:
    headers = {names.DLQ_ROUTE: bus.route, names.DLQ_STEP: step, names.DLQ_ERROR_CLASS: error_class,
               names.DLQ_LAST_FAILURE: died, names.RESUME_STEP: 0}
    body = f'{{"id": "{message_id}"}}'.encode()
    sealed = SEAL.sealed(bus.route, message_id, body, headers)
    bus.broker.publish("", names.dead_letter_queue(bus.route), Outgoing(body, "application/json", sealed,
                                                                        message_id)).result(10)


def ids(letters) -> list[str]:
    return [letter.id for letter in letters]


def test_a_copy_of_a_dead_letter_is_replayed_once_and_a_later_death_of_the_same_message_again(bus):
    ledger = ReplayLedger(":memory:")
    dead(bus, "m", "2025-05-01T09:00:00.000+00:00")
    dead(bus, "m", "2025-05-01T09:00:00.000+00:00")   # the same dead letter twice
    dead(bus, "m", "2025-05-01T10:00:00.000+00:00")   # replayed, died again
    report = dlq.replay_report(bus.broker, bus.route, dlq.Selection(), seal=SEAL, ledger=ledger, user="alice")
    assert [letter.last_failure[11:16] for letter in report.replayed] == ["09:00", "10:00"]
    [(copy, earlier)] = report.skipped
    assert (copy.last_failure, earlier.user) == ("2025-05-01T09:00:00.000+00:00", "alice")
    assert ids(dlq.browse(bus.broker, bus.route, seal=SEAL)) == ["m"]
    assert bus.broker.queue_depth(bus.route)[0] == 2


def test_without_a_ledger_every_copy_goes_back_as_before(bus):
    dead(bus, "m", "2025-05-01T09:00:00.000+00:00")
    dead(bus, "m", "2025-05-01T09:00:00.000+00:00")
    assert dlq.replay(bus.broker, bus.route, replay_all=True, seal=SEAL) == 2


def test_a_dry_run_predicts_the_replay_and_leaves_every_dead_letter_in_place(bus):
    ledger = ReplayLedger(":memory:")
    for message_id, step in (("a", "post"), ("b", "archive"), ("c", "archive")):
        dead(bus, message_id, "2025-05-01T09:00:00.000+00:00", step=step)
    dead(bus, "c", "2025-05-01T09:00:00.000+00:00", step="archive")
    selection = dlq.Selection(steps=frozenset({"archive"}))
    planned = dlq.plan(bus.broker, bus.route, selection, seal=SEAL, ledger=ledger, user="alice")
    assert ids(dlq.browse(bus.broker, bus.route, seal=SEAL)) == ["a", "b", "c", "c"]
    done = dlq.replay_report(bus.broker, bus.route, selection, seal=SEAL, ledger=ledger, user="alice")
    assert (ids(planned.replayed), ids(letter for letter, _ in planned.skipped)) == (["b", "c"], ["c"])
    assert (ids(done.replayed), ids(letter for letter, _ in done.skipped)) == (["b", "c"], ["c"])


def test_an_id_not_in_the_dlq_is_reported_with_its_last_replay(bus):
    ledger = ReplayLedger(":memory:")
    dead(bus, "m", "2025-05-01T09:00:00.000+00:00")
    dlq.replay(bus.broker, bus.route, ids=["m"], seal=SEAL, ledger=ledger, user="alice")
    wanted = dlq.Selection(ids=frozenset({"m", "never"}))
    report = dlq.replay_report(bus.broker, bus.route, wanted, seal=SEAL, ledger=ledger)
    assert report.count == 0
    assert [(i, r and r.user) for i, r in report.missing] == [("m", "alice"), ("never", None)]


def test_selection_matches_error_class_step_and_time_together(bus):
    dead(bus, "old", "2025-05-01T09:00:00.000+00:00")
    dead(bus, "new", "2025-05-02T09:00:00.000+00:00")
    dead(bus, "other", "2025-05-02T09:00:00.000+00:00", error_class="retries_exhausted")
    letters = dlq.browse(bus.broker, bus.route, seal=SEAL)
    since = datetime.datetime(2025, 5, 2, tzinfo=datetime.UTC)
    chosen = dlq.Selection(error_classes=frozenset({"permanent"}), steps=frozenset({"post"}), since=since)
    assert ids(filter(chosen.matches, letters)) == ["new"]
    assert ids(filter(dlq.Selection(since=since).matches, letters)) == ["new", "other"]


def test_replaying_an_id_skips_a_stale_copy_and_replays_its_later_death(bus):
    ledger = ReplayLedger(":memory:")
    dead(bus, "m", "2025-05-01T09:00:00.000+00:00")
    assert dlq.replay(bus.broker, bus.route, ids=["m"], seal=SEAL, ledger=ledger) == 1
    dead(bus, "m", "2025-05-01T09:00:00.000+00:00")   # a stale copy of the letter replayed
    dead(bus, "m", "2025-05-01T10:00:00.000+00:00")   # the message died again
    report = dlq.replay_report(bus.broker, bus.route, dlq.Selection(ids=frozenset({"m"})), seal=SEAL, ledger=ledger)
    assert [letter.last_failure[11:16] for letter in report.replayed] == ["10:00"]
    assert [letter.last_failure[11:16] for letter, _ in report.skipped] == ["09:00"] and report.missing == []
