"""The SQLite store's group commit (esb/store/groupcommit.py): many route threads' writes in one
transaction, each caller back only once its write is committed, and a failed commit failing them all."""

import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from esb.store import CLAIMED, DONE, IN_PROGRESS, SqliteStore, StepRecord, StoreUnavailable, owner_id
from esb.store.groupcommit import GroupCommitter

POSTED = StepRecord(0, "post-voucher", {"body": '{"voucher_id": "V-1"}', "content_type": "application/json",
                                        "headers": {}}, None)


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "idempotency.sqlite3")
    yield store
    store.close()


def _committer(path, **kwargs) -> GroupCommitter:
    def connect():
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")
        return db
    return GroupCommitter(connect, lambda exc: StoreUnavailable(str(exc)), **kwargs)


def _insert(key):
    return lambda db: db.execute("INSERT INTO t VALUES (?)", (key,)).rowcount


def _keys(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {k for (k,) in db.execute("SELECT k FROM t")}


def _held(committer: GroupCommitter) -> threading.Event:
    """Keep the committer busy in a transaction until the event is set: what is queued meanwhile
    goes into its next transaction, all together."""
    gate, inside = threading.Event(), threading.Event()
    threading.Thread(target=committer.run, args=(lambda db: inside.set() or gate.wait(10),), daemon=True).start()
    assert inside.wait(10)
    return gate


def _queued(committer: GroupCommitter, ops, pool: ThreadPoolExecutor):
    futures = [pool.submit(committer.run, op) for op in ops]
    while committer._queue.qsize() < len(ops):  # every caller waits in the queue
        threading.Event().wait(0.001)
    return futures


def test_every_write_of_many_threads_is_visible_once_its_call_returns(store):
    def one_message(n: int) -> None:
        key, owner = f"k{n}", f"worker-{n}"
        assert store.claim("r", key, owner, 60).status == CLAIMED
        assert store.get("r", key).state == IN_PROGRESS  # read on this thread's own connection
        store.record_step("r", key, owner, POSTED)
        assert store.get("r", key).progress == (POSTED,)
        store.finish("r", key, owner, {"n": n})
        assert store.get("r", key).outcome == {"n": n}

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(one_message, range(640)))
    assert all(store.get("r", f"k{n}").state == DONE for n in range(640))


def test_writes_queued_together_commit_in_one_transaction(tmp_path):
    committer, path = _committer(tmp_path / "t.db"), tmp_path / "t.db"
    commits = []
    with ThreadPoolExecutor(8) as pool:
        gate = _held(committer)
        futures = _queued(committer, [_insert(f"k{n}") for n in range(6)], pool)
        original = GroupCommitter._commit
        committer._commit = lambda db, batch: commits.append(len(batch)) or original(committer, db, batch)
        gate.set()
        assert [f.result(10) for f in futures] == [1] * 6
    assert commits == [6] and _keys(path) == {f"k{n}" for n in range(6)}
    committer.close()


def test_a_failed_commit_fails_every_caller_in_it_and_keeps_none_of_its_writes(tmp_path):
    committer, path = _committer(tmp_path / "t.db"), tmp_path / "t.db"

    def disk_failed(db):
        raise sqlite3.OperationalError("disk I/O error")
    with ThreadPoolExecutor(8) as pool:
        gate = _held(committer)
        futures = _queued(committer, [_insert("a"), _insert("b"), disk_failed, _insert("c")], pool)
        gate.set()
        for future in futures:
            with pytest.raises(StoreUnavailable, match="disk I/O error"):
                future.result(10)
    assert _keys(path) == set()
    assert committer.run(_insert("d")) == 1  # the next transaction goes on
    committer.close()


def test_a_write_failing_on_its_own_fails_only_its_caller(tmp_path):
    committer, path = _committer(tmp_path / "t.db"), tmp_path / "t.db"

    def bug(db):
        raise KeyError("a bug in one write")
    with ThreadPoolExecutor(8) as pool:
        gate = _held(committer)
        futures = _queued(committer, [_insert("a"), bug, _insert("b")], pool)
        gate.set()
        assert futures[0].result(10) == futures[2].result(10) == 1
        with pytest.raises(KeyError):
            futures[1].result(10)
    assert _keys(path) == {"a", "b"}
    committer.close()


def test_a_store_locked_past_its_busy_timeout_fails_the_write_and_keeps_nothing(tmp_path):
    path = tmp_path / "idempotency.sqlite3"
    store = SqliteStore(path, busy_timeout=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(store.claim, "r", f"k{n}", "w", 60) for n in range(4)]
            for future in futures:
                with pytest.raises(StoreUnavailable, match="locked"):
                    future.result(10)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [store.get("r", f"k{n}") for n in range(4)] == [None] * 4
    assert store.claim("r", "k0", "w", 60).status == CLAIMED
    store.close()


def test_closing_commits_the_queued_writes_then_stops_the_committer(tmp_path):
    committer, path = _committer(tmp_path / "t.db"), tmp_path / "t.db"
    with ThreadPoolExecutor(8) as pool:
        gate = _held(committer)
        futures = _queued(committer, [_insert(f"k{n}") for n in range(5)], pool)
        closing = threading.Thread(target=committer.close)
        closing.start()
        gate.set()
        closing.join(10)
        assert [f.result(10) for f in futures] == [1] * 5
    assert _keys(path) == {f"k{n}" for n in range(5)}
    assert not committer._thread.is_alive()
    with pytest.raises(StoreUnavailable, match="closed"):
        committer.run(_insert("late"))


def test_a_closed_store_refuses_writes_as_unavailable(store):
    store.claim("r", "k", "w", 60)
    store.close()
    with pytest.raises(StoreUnavailable):
        store.claim("r", "k2", "w", 60)


_KILLED_AFTER_CLAIM = """
import sys, time
from esb.store import SqliteStore, StepRecord, owner_id
store = SqliteStore(sys.argv[1])
owner = owner_id()
store.claim("r", "k", owner, 600)
store.record_step("r", "k", owner, StepRecord(0, "post-voucher", {"body": "{}", "content_type": "application/json",
                                                                   "headers": {}}, None))
print(owner, flush=True)
time.sleep(60)
"""


def test_a_worker_killed_between_claim_and_done_leaves_its_claim_and_steps_for_the_next(tmp_path):
    path = tmp_path / "idempotency.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_AFTER_CLAIM, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        owner = child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    store = SqliteStore(path)
    record = store.get("r", "k")
    assert (record.state, record.owner, [s.label for s in record.progress]) == (IN_PROGRESS, owner, ["post-voucher"])
    claim = store.claim("r", "k", owner_id(), 60)  # its process is gone: taken over at once
    assert claim.status == CLAIMED and [s.label for s in claim.progress] == ["post-voucher"]
    store.close()


def _claim_in_child(store: SqliteStore, key: str) -> None:
    sys.exit(0 if store.claim("r", key, owner_id(), 60).status == CLAIMED else 1)


def test_a_store_that_wrote_before_a_fork_writes_in_the_child_with_a_committer_of_its_own(store):
    store.claim("r", "parent", "w", 60)
    child = multiprocessing.get_context("fork").Process(target=_claim_in_child, args=(store, "child"))
    child.start()
    child.join(20)
    assert child.exitcode == 0 and store.get("r", "child").state == IN_PROGRESS
    store.claim("r", "parent-again", "w", 60)  # the parent's committer still runs


def test_two_owners_claiming_one_new_key_in_one_transaction_get_one_claim(store):
    with ThreadPoolExecutor(4) as pool:
        gate = _held(store._committer)
        futures = [pool.submit(store.claim, "r", "k", owner, 60) for owner in ("w1", "w2")]
        while store._committer._queue.qsize() < 2:
            threading.Event().wait(0.001)
        gate.set()
        statuses = sorted(f.result(10).status for f in futures)
    assert statuses == ["busy", CLAIMED]


class _Answers:
    """The (result, error) each `then` got, in the order the committer called them."""

    def __init__(self, expected: int):
        self.got: list = []
        self.all_in = threading.Event()
        self.expected = expected

    def then(self, name):
        def then(result, error):
            self.got.append((name, result, error))
            if len(self.got) == self.expected:
                self.all_in.set()
        return then


def test_a_submitted_write_returns_at_once_and_answers_on_the_committer_after_its_commit(tmp_path):
    committer, path = _committer(tmp_path / "t.db"), tmp_path / "t.db"
    answers = _Answers(2)
    gate = _held(committer)
    seen_at_answer = []
    committer.submit(_insert("a"), lambda result, error: seen_at_answer.append((_keys(path), result, error))
                     or answers.then("a")(result, error))
    committer.submit(_insert("b"), answers.then("b"))
    assert answers.got == [] and _keys(path) == set()  # queued behind the held transaction, caller not waiting
    gate.set()
    assert answers.all_in.wait(10)
    assert seen_at_answer == [({"a", "b"}, 1, None)]  # committed before its answer ran
    assert [(name, result, error) for name, result, error in answers.got] == [("a", 1, None), ("b", 1, None)]
    committer.close()


def test_submitted_and_waited_writes_commit_in_the_order_they_were_queued(tmp_path):
    committer = _committer(tmp_path / "t.db")
    order = []

    def step(name):
        return lambda db: order.append(name) or 1
    gate = _held(committer)
    committer.submit(step("record"), lambda result, error: None)
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(committer.run, step("done"))
        while committer._queue.qsize() < 2:
            threading.Event().wait(0.001)
        gate.set()
        assert done.result(10) == 1
    assert order == ["record", "done"]
    committer.close()


def test_a_failed_commit_answers_each_submitted_write_with_the_stores_error(tmp_path):
    committer = _committer(tmp_path / "t.db")
    answers = _Answers(2)

    def disk_failed(db):
        raise sqlite3.OperationalError("disk I/O error")
    gate = _held(committer)
    committer.submit(_insert("a"), answers.then("a"))
    committer.submit(disk_failed, answers.then("failed"))
    gate.set()
    assert answers.all_in.wait(10)
    for _name, result, error in answers.got:
        assert result is None and isinstance(error, StoreUnavailable) and "disk I/O error" in str(error)
    committer.close()


def test_an_answer_that_raises_does_not_stop_the_committer(tmp_path):
    committer, path = _committer(tmp_path / "t.db"), tmp_path / "t.db"

    def broken(result, error):
        raise RuntimeError("a bug in a callback")
    committer.submit(_insert("a"), broken)
    assert committer.run(_insert("b")) == 1
    assert _keys(path) == {"a", "b"}
    committer.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        committer.submit(_insert("late"), broken)


def test_claim_later_and_record_step_later_answer_what_claim_and_record_step_would(store):
    answers = _Answers(4)
    store.claim_later("r", "k", "w1", 60, answers.then("claim"))
    store.record_step_later("r", "k", "w1", POSTED, answers.then("record"))
    store.claim_later("r", "k", "w2", 60, answers.then("claim again"))
    store.record_step_later("r", "k", "w2", POSTED, answers.then("record by another"))
    assert answers.all_in.wait(10)
    (_, claim, e1), (_, recorded, e2), (_, busy, e3), (_, _, lost) = answers.got
    assert (claim.status, recorded, busy.status) == (CLAIMED, None, "busy") and e1 is e2 is e3 is None
    assert type(lost).__name__ == "LeaseLost" and "w2 cannot record a step for r/k" in str(lost)
    assert store.get("r", "k").progress == (POSTED,)
    store.finish("r", "k", "w1", {})
    assert store.get("r", "k").state == DONE


def test_finish_later_answers_what_finish_would_after_the_steps_queued_before_it(store):
    answers = _Answers(5)
    store.claim_later("r", "k", "w1", 60, answers.then("claim"))
    store.record_step_later("r", "k", "w1", POSTED, answers.then("record"))
    store.finish_later("r", "k", "w2", {}, answers.then("done by another"))
    store.finish_later("r", "k", "w1", {"dropped": False}, answers.then("done"))
    store.finish_later("r", "k", "w1", {"dropped": False}, answers.then("done again"))
    assert answers.all_in.wait(10)
    names = [name for name, _, _ in answers.got]
    assert names == ["claim", "record", "done by another", "done", "done again"]  # in the order queued
    (_, _, e1), (_, _, e2), (_, _, lost), (_, r4, e4), (_, r5, e5) = answers.got
    assert e1 is e2 is e4 is e5 is None and r4 is r5 is None  # a repeat by the same owner is fine, as finish's
    assert type(lost).__name__ == "LeaseLost" and "w2" in str(lost)
    record = store.get("r", "k")
    assert record.state == DONE and record.outcome == {"dropped": False}
