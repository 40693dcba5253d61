"""The dedup store contract, run against SQLite and against the real Redis on 127.0.0.1:6379."""

import dataclasses
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from esb.errors import ConfigError, TransformError
from esb.store import (
    BUSY,
    CLAIMED,
    DEAD,
    DONE,
    IN_PROGRESS,
    LeaseLost,
    RedisStore,
    SqliteStore,
    StepRecord,
    StoreUnavailable,
    _owner_alive,
    open_store,
    owner_id,
)
from esb.transform import jsoncodec

REDIS_URL = "redis://127.0.0.1:6379/0"
START_REDIS = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no"

POSTED = StepRecord(2, "post-voucher", {"body": '{"voucher_id": "V-1", "total": 1234.50}',
                                        "content_type": "application/json", "headers": {"x-esb-attempt": 1}},
                    {"adapter": "ledger-rest", "operation": "cancel_voucher"})
ARCHIVED = StepRecord(5, "archive", {"body": "<VoucherReceipt/>", "content_type": "application/xml", "headers": {}},
                      None)


@dataclasses.dataclass(frozen=True)
class Backend:
    kind: str
    path: str
    url: str

    def open(self):
        return open_store(self.kind, self.path, self.url)


def _require_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not running on 127.0.0.1:6379; start it with: {START_REDIS}", pytrace=False)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path) -> Backend:
    if request.param == "redis":
        _require_redis()
    return Backend(request.param, str(tmp_path / "var" / "idempotency.sqlite3"), REDIS_URL)


@pytest.fixture
def route(backend):
    name = f"test-{uuid.uuid4().hex}"
    yield name
    if backend.kind == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        try:
            for key in client.scan_iter(f"esb:idem:{name}:*", count=1000):
                client.delete(key)
        finally:
            client.close()


@pytest.fixture
def store(backend):
    opened = backend.open()
    yield opened
    opened.close()


def _exact(value) -> str:
    """Decimal('0.10') == Decimal('0.1'); the JSON text tells them apart."""
    return jsoncodec.dumps(value)


def _in_processes(count: int, target, *args) -> list:
    """Run `target(start, finish, results, *args)` in `count` processes at once; what each reported."""
    context = multiprocessing.get_context("spawn")
    start, finish, results = context.Barrier(count), context.Barrier(count), context.Queue()
    workers = [context.Process(target=target, args=(start, finish, results, *args)) for _ in range(count)]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=90) for _ in workers]
    for worker in workers:
        worker.join(30)
    results.close()
    results.join_thread()
    return reports


def _claim_in_process(start, finish, results, backend: Backend, route: str, keys: int) -> None:
    store, owner = backend.open(), owner_id()
    try:
        start.wait(60)
        results.put([store.claim(route, f"C-{i}", owner, 60).status for i in range(keys)])
        finish.wait(60)  # stay alive: a dead owner's lease may rightly be taken over
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put(repr(exc))
    finally:
        store.close()


class TestIdempotencyStore:
    def test_a_new_key_is_claimed_with_no_progress(self, store, route):
        owner = owner_id()
        claim = store.claim(route, "C-1", owner, 60)
        assert (claim.status, claim.progress) == (CLAIMED, ())
        record = store.get(route, "C-1")
        assert (record.state, record.owner) == (IN_PROGRESS, owner)
        assert time.time() + 50 < record.lease_until < time.time() + 70

    def test_an_unknown_key_has_no_record(self, store, route):
        assert store.get(route, "never-seen") is None

    def test_a_done_key_is_reported_done_and_never_claimed_again(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 60)
        store.finish(route, "C-1", owner, {"voucher_id": "V-1"})
        for claimer in (owner_id(), owner):
            claim = store.claim(route, "C-1", claimer, 60)
            assert (claim.status, claim.outcome, claim.progress) == (DONE, {"voucher_id": "V-1"}, ())
        record = store.get(route, "C-1")
        assert (record.state, record.owner, record.lease_until) == (DONE, owner, None)

    def test_a_live_lease_of_another_worker_is_busy(self, store, route):
        store.claim(route, "C-1", owner_id(), 60)
        claim = store.claim(route, "C-1", owner_id(), 60)
        assert claim.status == BUSY
        assert time.time() + 50 < claim.lease_until < time.time() + 70

    def test_the_same_owner_claiming_again_gets_its_progress_back(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 60)
        store.record_step(route, "C-1", owner, POSTED)
        assert store.claim(route, "C-1", owner, 60).progress == (POSTED,)

    def test_an_expired_lease_is_taken_over_with_its_progress(self, store, route):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, 0.05)
        store.record_step(route, "C-1", first, POSTED)
        store.record_step(route, "C-1", first, ARCHIVED)
        time.sleep(0.15)
        claim = store.claim(route, "C-1", second, 60)
        assert (claim.status, claim.progress) == (CLAIMED, (POSTED, ARCHIVED))
        assert store.get(route, "C-1").owner == second

    def test_a_dead_owner_process_lease_is_taken_over_at_once(self, store, route):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            holder = f"{socket.gethostname()}:{child.pid}:deadbeef"
            store.claim(route, "C-1", holder, 3600)
            store.record_step(route, "C-1", holder, POSTED)
            assert store.claim(route, "C-1", owner_id(), 60).status == BUSY  # alive: its lease stands
        finally:
            child.kill()
            child.wait()
        claim = store.claim(route, "C-1", owner_id(), 60)
        assert (claim.status, claim.progress) == (CLAIMED, (POSTED,))

    def test_a_killed_owner_not_yet_reaped_counts_as_dead(self, store, route):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            holder = f"{socket.gethostname()}:{child.pid}:deadbeef"
            store.claim(route, "C-1", holder, 3600)
            child.kill()
            _wait_until_zombie(child.pid)
            assert store.claim(route, "C-1", owner_id(), 60).status == CLAIMED
        finally:
            child.kill()
            child.wait()

    def test_an_owner_on_another_host_keeps_its_lease_until_it_expires(self, store, route):
        holder = "some-other-host:999999999:deadbeef"  # no such pid here, but it is not ours to check
        store.claim(route, "C-1", holder, 0.3)
        assert store.claim(route, "C-1", owner_id(), 60).status == BUSY
        time.sleep(0.4)
        assert store.claim(route, "C-1", owner_id(), 60).status == CLAIMED

    def test_recording_a_step_renews_the_lease(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 1.0)
        claimed_until = store.get(route, "C-1").lease_until
        time.sleep(0.6)
        store.record_step(route, "C-1", owner, POSTED)
        assert store.get(route, "C-1").lease_until >= claimed_until + 0.5

    def test_record_step_after_losing_the_lease_raises_lease_lost(self, store, route):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, 0.05)
        time.sleep(0.15)
        store.claim(route, "C-1", second, 60)
        with pytest.raises(LeaseLost, match=second):
            store.record_step(route, "C-1", first, POSTED)
        assert store.get(route, "C-1").progress == ()

    def test_finish_and_mark_dead_after_losing_the_lease_raise_lease_lost(self, store, route):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, 0.05)
        time.sleep(0.15)
        store.claim(route, "C-1", second, 60)
        store.record_step(route, "C-1", second, POSTED)
        with pytest.raises(LeaseLost):
            store.finish(route, "C-1", first, {"voucher_id": "V-1"})
        with pytest.raises(LeaseLost):
            store.mark_dead(route, "C-1", first)
        record = store.get(route, "C-1")
        assert (record.state, record.owner, record.progress) == (IN_PROGRESS, second, (POSTED,))

    def test_lease_lost_is_a_transient_error(self):
        from esb.errors import TransientError

        assert issubclass(LeaseLost, TransientError)

    def test_dead_record_can_be_claimed_again_by_a_replay(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 60)
        store.record_step(route, "C-1", owner, POSTED)
        store.mark_dead(route, "C-1", owner)
        record = store.get(route, "C-1")
        assert (record.state, record.progress, record.lease_until) == (DEAD, (), None)
        claim = store.claim(route, "C-1", owner_id(), 60)
        assert (claim.status, claim.progress) == (CLAIMED, ())

    def test_release_keeps_progress_and_lets_the_retry_claim_at_once(self, store, route):
        first = owner_id()
        store.claim(route, "C-1", first, 60)
        store.record_step(route, "C-1", first, POSTED)
        store.release(route, "C-1", first)
        record = store.get(route, "C-1")
        assert (record.state, record.owner, record.lease_until, record.progress) == (IN_PROGRESS, None, None,
                                                                                     (POSTED,))
        claim = store.claim(route, "C-1", owner_id(), 60)
        assert (claim.status, claim.progress) == (CLAIMED, (POSTED,))

    def test_release_by_a_worker_that_lost_the_lease_changes_nothing(self, store, route):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, 0.05)
        time.sleep(0.15)
        store.claim(route, "C-1", second, 60)
        store.release(route, "C-1", first)
        assert store.claim(route, "C-1", owner_id(), 60).status == BUSY

    def test_finishing_or_marking_dead_twice_is_harmless(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 60)
        store.finish(route, "C-1", owner, {"voucher_id": "V-1"})
        store.finish(route, "C-1", owner, {"voucher_id": "V-1"})
        store.claim(route, "C-2", owner, 60)
        store.mark_dead(route, "C-2", owner)
        store.mark_dead(route, "C-2", owner)
        assert (store.get(route, "C-1").state, store.get(route, "C-2").state) == (DONE, DEAD)

    def test_finish_many_finishes_every_key_and_keeps_each_outcome(self, store, route):
        owner = owner_id()
        keys = [f"C-{i}" for i in range(250)]  # more than one SQLite statement holds
        for key in keys:
            store.claim(route, key, owner, 60)
        finished = [(key, owner, {"voucher_id": f"V-{key}", "total": Decimal("0.10")}) for key in keys]
        assert store.finish_many(route, finished) == [None] * len(keys)
        assert {store.get(route, key).state for key in keys} == {DONE}
        assert store.claim(route, "C-249", owner_id(), 60).outcome == {"voucher_id": "V-C-249",
                                                                       "total": Decimal("0.10")}

    def test_finish_many_reports_a_lost_lease_for_that_key_only(self, store, route):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, 0.05)
        store.claim(route, "C-2", first, 60)
        time.sleep(0.15)
        store.claim(route, "C-1", second, 60)  # took C-1 over
        errors = store.finish_many(route, [("C-1", first, {}), ("C-2", first, {}), ("C-3", first, {})])
        assert [type(e) for e in errors] == [LeaseLost, type(None), type(None)]
        assert (store.get(route, "C-1").state, store.get(route, "C-1").owner) == (IN_PROGRESS, second)
        assert (store.get(route, "C-2").state, store.get(route, "C-3").state) == (DONE, DONE)

    def test_finish_many_twice_is_harmless(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 60)
        assert store.finish_many(route, [("C-1", owner, {"n": 1})]) == [None]
        assert store.finish_many(route, [("C-1", owner, {"n": 1})]) == [None]
        assert store.get(route, "C-1").state == DONE

    def test_a_route_without_side_effects_can_finish_without_a_claim(self, store, route):
        store.finish(route, "C-1", owner_id(), {"published": 1})
        assert store.claim(route, "C-1", owner_id(), 60).outcome == {"published": 1}

    def test_marking_an_unclaimed_key_dead_leaves_it_claimable(self, store, route):
        store.mark_dead(route, "C-1", owner_id())
        assert store.claim(route, "C-1", owner_id(), 60).status == CLAIMED

    def test_decimal_amounts_round_trip_exactly_in_outcome_and_state(self, store, route):
        amounts = {"total": Decimal("12345678901234567890.10"), "fee": Decimal("0.10"),
                   "rate": Decimal("1E-7"), "refund": Decimal("-0.00"), "lines": 3}
        step = StepRecord(1, "post", {"body": amounts, "headers": {"amount": Decimal("50000.00")}},
                          {"operation": "cancel_voucher", "amount": Decimal("0.10")})
        owner = owner_id()
        store.claim(route, "C-1", owner, 0.05)
        store.record_step(route, "C-1", owner, step)
        time.sleep(0.15)
        taken_over = store.claim(route, "C-1", owner_id(), 60)
        assert _exact(taken_over.progress[0].state) == _exact(step.state)
        assert _exact(taken_over.progress[0].compensation) == _exact(step.compensation)
        store.claim(route, "C-2", owner, 60)
        store.finish(route, "C-2", owner, amounts)
        assert _exact(store.claim(route, "C-2", owner, 60).outcome) == _exact(amounts)

    def test_a_float_amount_is_refused_and_the_record_keeps_its_lease(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 60)
        with pytest.raises(TransformError, match="float"):
            store.finish(route, "C-1", owner, {"total": 1234.5})
        assert store.get(route, "C-1").state == IN_PROGRESS

    def test_steps_come_back_in_the_order_they_were_recorded_whatever_text_they_hold(self, store, route):
        owner = owner_id()
        odd = StepRecord(3, "publish-large", {"body": "line 1\nline 2\u2028still line 2\r\n\x00", "headers": {}}, None)
        steps = (POSTED, odd, dataclasses.replace(odd, label="publish-review"), ARCHIVED)
        store.claim(route, "C-1", owner, 60)
        for step in steps:
            store.record_step(route, "C-1", owner, step)
        assert store.claim(route, "C-1", owner, 60).progress == steps

    def test_each_route_has_its_own_records(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 60)
        store.finish(route, "C-1", owner, {})
        other = f"{route}-other"
        try:
            assert store.claim(other, "C-1", owner_id(), 60).status == CLAIMED
        finally:
            store.mark_dead(other, "C-1", store.get(other, "C-1").owner)

    def test_threads_claiming_one_key_get_exactly_one_claim(self, store, route):
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: store.claim(route, "one-key", owner_id(), 60).status, range(16)))
        assert sorted(statuses) == [BUSY] * 15 + [CLAIMED]

    def test_two_processes_claiming_one_key_get_exactly_one_claim(self, backend, route):
        reports = _in_processes(8, _claim_in_process, backend, route, 200)
        assert all(isinstance(report, list) for report in reports), reports
        for statuses in zip(*reports, strict=True):  # one key's claims, one per process
            assert sorted(statuses) == [BUSY] * 7 + [CLAIMED]


def _open_new_store(start, finish, results, path: str) -> None:
    start.wait(60)
    try:
        store = SqliteStore(path)
        store.claim("r", "k", owner_id(), 60)
        store.close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put(repr(exc))


def test_workers_opening_a_new_sqlite_store_at_once_all_succeed(tmp_path):
    outcomes = _in_processes(6, _open_new_store, str(tmp_path / "new" / "idem.sqlite3"))
    assert outcomes == ["ok"] * 6


def _wait_until_zombie(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not die")


def test_owner_ids_name_this_host_and_process_and_differ_each_time():
    first, second = owner_id(), owner_id()
    host, pid, _ = first.split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert first != second


def test_an_owner_on_another_host_or_with_a_foreign_name_is_assumed_alive():
    assert _owner_alive("some-other-host:1:abc")
    assert _owner_alive("not-an-owner-id")
    assert _owner_alive(owner_id())


def test_an_unknown_store_kind_is_refused_with_the_nearest_name():
    with pytest.raises(ConfigError, match="did you mean 'sqlite'"):
        open_store("sqlit", "var/x.sqlite3", REDIS_URL)


def test_the_sqlite_store_creates_its_folders_and_writes_ahead(tmp_path):
    path = tmp_path / "deep" / "var" / "idempotency.sqlite3"
    store = SqliteStore(path)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_done_and_dead_redis_records_expire_but_work_in_progress_does_not():
    _require_redis()
    route, owner = f"test-{uuid.uuid4().hex}", owner_id()
    store = RedisStore(REDIS_URL, done_ttl_seconds=600)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in ("done", "dead", "replayed"):
            store.claim(route, key, owner, 60)
        store.finish(route, "done", owner, {})
        store.mark_dead(route, "dead", owner)
        store.mark_dead(route, "replayed", owner)
        store.claim(route, "replayed", owner, 60)
        ttls = {key: client.ttl(store.key(route, key)) for key in ("done", "dead", "replayed")}
        assert 590 < ttls["done"] <= 600 and 590 < ttls["dead"] <= 600
        assert ttls["replayed"] == -1
    finally:
        client.delete(*(store.key(route, key) for key in ("done", "dead", "replayed")))
        client.close()
        store.close()


def test_an_unreachable_redis_is_a_transient_error_that_hides_the_password():
    store = RedisStore("redis://esb:s3cret@127.0.0.1:1/0", socket_timeout=2)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.claim("r", "k", owner_id(), 60)
    finally:
        store.close()
    assert "s3cret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)


def test_a_redis_route_name_with_a_colon_is_refused():
    store = RedisStore(REDIS_URL)
    try:
        with pytest.raises(ValueError, match="cannot contain ':'"):
            store.key("a:b", "c")
    finally:
        store.close()
