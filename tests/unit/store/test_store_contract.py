"""The dedup store contract, run against SQLite, the real Redis on 127.0.0.1:6379 and the real
PostgreSQL on 127.0.0.1:5432.

Leases run out on the fake clock (conftest.FakeClock), never by sleeping; only the tests with
several processes use the real clock."""

import dataclasses
import multiprocessing
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from esb.errors import TransformError
from esb.store import (
    BUSY,
    CLAIMED,
    DEAD,
    DONE,
    IN_PROGRESS,
    Claim,
    LeaseLost,
    Record,
    SqliteStore,
    StepRecord,
    open_store,
    owner_id,
)
from esb.transform import jsoncodec

POSTED = StepRecord(2, "post-voucher", {"body": '{"voucher_id": "V-1", "total": 1234.50}',
                                        "content_type": "application/json", "headers": {"x-esb-attempt": 1}},
                    {"adapter": "ledger-rest", "operation": "cancel_voucher"})
ARCHIVED = StepRecord(5, "archive", {"body": "<VoucherReceipt/>", "content_type": "application/xml", "headers": {}},
                      None)
LEASE = 60


@dataclasses.dataclass(frozen=True)
class Backend:
    kind: str
    path: str
    url: str

    def open(self, clock=time.time):
        return open_store(self.kind, self.path, self.url, clock=clock)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def backend(request, tmp_path) -> Backend:
    url = request.getfixturevalue(f"{request.param}_url") if request.param != "sqlite" else ""
    return Backend(request.param, str(tmp_path / "var" / "idempotency.sqlite3"), url)


@pytest.fixture
def route(backend):
    name = f"test-{uuid.uuid4().hex}"
    yield name
    if backend.kind == "redis":  # this route's records and redelivery counts, and those of f"{name}-other"
        client = redis.Redis.from_url(backend.url)
        try:
            for pattern in (f"esb:idem:{name}*", f"esb:redelivered:{name}*"):
                for key in client.scan_iter(pattern, count=1000):
                    client.delete(key)
        finally:
            client.close()


@pytest.fixture
def store(backend, clock):
    opened = backend.open(clock)
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
    def test_a_new_key_is_claimed_with_no_progress_and_a_lease_from_the_stores_clock(self, store, route, clock):
        owner = owner_id()
        claim = store.claim(route, "C-1", owner, LEASE)
        assert (claim.status, claim.progress, claim.generations) == (CLAIMED, (), {})
        record = store.get(route, "C-1")
        assert (record.state, record.owner, record.lease_until) == (IN_PROGRESS, owner, clock.now + LEASE)
        assert (record.updated_at, record.generations) == (clock.now, {})

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

    def test_a_live_lease_of_another_worker_is_busy_until_it_runs_out(self, store, route, clock):
        store.claim(route, "C-1", owner_id(), LEASE)
        until = clock.now + LEASE
        clock.advance(LEASE - 0.001)
        assert store.claim(route, "C-1", owner_id(), LEASE) == Claim(BUSY, lease_until=until)

    def test_the_same_owner_claiming_again_gets_its_progress_back(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, 60)
        store.record_step(route, "C-1", owner, POSTED)
        assert store.claim(route, "C-1", owner, 60).progress == (POSTED,)

    def test_an_expired_lease_is_taken_over_with_its_progress(self, store, route, clock):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, LEASE)
        store.record_step(route, "C-1", first, POSTED)
        store.record_step(route, "C-1", first, ARCHIVED)
        clock.advance(LEASE)
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

    def test_an_owner_on_another_host_keeps_its_lease_until_it_expires(self, store, route, clock):
        holder = "some-other-host:999999999:deadbeef"  # no such pid here, but it is not ours to check
        store.claim(route, "C-1", holder, LEASE)
        clock.advance(LEASE - 1)
        assert store.claim(route, "C-1", owner_id(), 60).status == BUSY
        clock.advance(1)
        assert store.claim(route, "C-1", owner_id(), 60).status == CLAIMED

    def test_recording_a_step_renews_the_lease(self, store, route, clock):
        owner = owner_id()
        store.claim(route, "C-1", owner, LEASE)
        clock.advance(LEASE - 1)
        store.record_step(route, "C-1", owner, POSTED)
        assert store.get(route, "C-1").lease_until == clock.now + LEASE
        clock.advance(LEASE - 1)
        assert store.claim(route, "C-1", owner_id(), LEASE).status == BUSY

    def test_record_step_after_losing_the_lease_raises_lease_lost(self, store, route, clock):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, LEASE)
        clock.advance(LEASE)
        store.claim(route, "C-1", second, 60)
        with pytest.raises(LeaseLost, match=second):
            store.record_step(route, "C-1", first, POSTED)
        assert store.get(route, "C-1").progress == ()

    def test_finish_and_mark_dead_after_losing_the_lease_raise_lease_lost(self, store, route, clock):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, LEASE)
        clock.advance(LEASE)
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

    def test_release_by_a_worker_that_lost_the_lease_changes_nothing(self, store, route, clock):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, LEASE)
        clock.advance(LEASE)
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

    def test_finish_many_reports_a_lost_lease_for_that_key_only(self, store, route, clock):
        first, second = owner_id(), owner_id()
        store.claim(route, "C-1", first, LEASE)
        store.claim(route, "C-2", first, 2 * LEASE)
        clock.advance(LEASE)
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

    def test_decimal_amounts_round_trip_exactly_in_outcome_and_state(self, store, route, clock):
        amounts = {"total": Decimal("12345678901234567890.10"), "fee": Decimal("0.10"),
                   "rate": Decimal("1E-7"), "refund": Decimal("-0.00"), "lines": 3}
        step = StepRecord(1, "post", {"body": amounts, "headers": {"amount": Decimal("50000.00")}},
                          {"operation": "cancel_voucher", "amount": Decimal("0.10")})
        owner = owner_id()
        store.claim(route, "C-1", owner, LEASE)
        store.record_step(route, "C-1", owner, step)
        clock.advance(LEASE)
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

    def test_threads_replaying_one_dead_key_get_exactly_one_claim_with_its_generations(self, store, route):
        owner = owner_id()
        store.claim(route, "one-key", owner, LEASE)
        store.mark_dead(route, "one-key", owner, {"post-voucher": 1})
        with ThreadPoolExecutor(16) as pool:
            claims = list(pool.map(lambda _: store.claim(route, "one-key", owner_id(), LEASE), range(16)))
        assert sorted(c.status for c in claims) == [BUSY] * 15 + [CLAIMED]
        assert [c.generations for c in claims if c.status == CLAIMED] == [{"post-voucher": 1}]

    def test_two_processes_claiming_one_key_get_exactly_one_claim(self, backend, route):
        reports = _in_processes(8, _claim_in_process, backend, route, 200)
        assert all(isinstance(report, list) for report in reports), reports
        for statuses in zip(*reports, strict=True):  # one key's claims, one per process
            assert sorted(statuses) == [BUSY] * 7 + [CLAIMED]

    # --- generations: a compensated effect is replayed under a new key ---------------------------

    def test_generations_given_to_mark_dead_come_back_with_the_replays_claim(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, LEASE)
        store.record_step(route, "C-1", owner, POSTED)
        store.mark_dead(route, "C-1", owner, {"post-voucher": 1})
        assert store.get(route, "C-1").generations == {"post-voucher": 1}
        claim = store.claim(route, "C-1", owner_id(), LEASE)
        assert (claim.status, claim.progress, claim.generations) == (CLAIMED, (), {"post-voucher": 1})

    def test_a_replay_taken_over_after_a_crash_still_has_its_generations(self, store, route, clock):
        first = owner_id()
        store.claim(route, "C-1", first, LEASE)
        store.mark_dead(route, "C-1", first, {"post-voucher": 2, "archive": 1})
        replay = owner_id()
        store.claim(route, "C-1", replay, LEASE)
        store.record_step(route, "C-1", replay, POSTED)
        clock.advance(LEASE)  # the replaying worker died
        claim = store.claim(route, "C-1", owner_id(), LEASE)
        assert (claim.progress, claim.generations) == ((POSTED,), {"post-voucher": 2, "archive": 1})
        store.release(route, "C-1", store.get(route, "C-1").owner)
        assert store.claim(route, "C-1", owner_id(), LEASE).generations == {"post-voucher": 2, "archive": 1}

    def test_mark_dead_without_generations_keeps_those_the_record_had(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, LEASE)
        store.mark_dead(route, "C-1", owner, {"post-voucher": 1})
        store.claim(route, "C-1", owner, LEASE)
        store.mark_dead(route, "C-1", owner)
        assert store.get(route, "C-1").generations == {"post-voucher": 1}
        store.claim(route, "C-1", owner, LEASE)
        store.mark_dead(route, "C-1", owner, {"post-voucher": 2})
        assert store.claim(route, "C-1", owner, LEASE).generations == {"post-voucher": 2}

    def test_a_key_claimed_for_the_first_time_has_no_generations_even_where_another_route_has(self, store, route):
        owner = owner_id()
        store.claim(route, "C-1", owner, LEASE)
        store.mark_dead(route, "C-1", owner, {"post-voucher": 1})
        other = f"{route}-other"
        assert store.claim(other, "C-1", owner, LEASE).generations == {}
        assert store.claim(route, "C-2", owner, LEASE).generations == {}

    @pytest.mark.parametrize("generations", [{"post-voucher": -1}, {"post-voucher": True},
                                             {"post-voucher": Decimal("1.5")}, {1: 1}])
    def test_a_generation_that_is_not_a_whole_number_is_refused_and_the_lease_kept(self, store, route, generations):
        owner = owner_id()
        store.claim(route, "C-1", owner, LEASE)
        with pytest.raises(ValueError, match="generations map a step label to a whole number"):
            store.mark_dead(route, "C-1", owner, generations)
        assert (store.get(route, "C-1").state, store.get(route, "C-1").owner) == (IN_PROGRESS, owner)

    def test_a_dead_record_read_back_holds_its_state_and_generations(self, store, route, clock):
        owner = owner_id()
        store.claim(route, "C-1", owner, LEASE)
        clock.advance(5)
        store.mark_dead(route, "C-1", owner, {"post-voucher": 1})
        assert store.get(route, "C-1") == Record(DEAD, owner, None, (), None, clock.now, {"post-voucher": 1})

    # --- redeliveries: a message that kills its worker again and again ---------------------------

    def test_redeliveries_of_a_message_are_counted_from_one(self, store, route):
        assert [store.count_redelivery(route, "msg-1") for _ in range(3)] == [1, 2, 3]

    def test_each_route_and_message_has_its_own_redelivery_count(self, store, route):
        store.count_redelivery(route, "msg-1")
        store.count_redelivery(route, "msg-1")
        assert store.count_redelivery(route, "msg-2") == 1
        assert store.count_redelivery(f"{route}-other", "msg-1") == 1
        assert store.count_redelivery(route, "msg-1") == 3

    def test_threads_counting_one_message_each_get_a_count_of_their_own(self, store, route):
        with ThreadPoolExecutor(16) as pool:
            counts = list(pool.map(lambda _: store.count_redelivery(route, "msg-1"), range(64)))
        assert sorted(counts) == list(range(1, 65))

    def test_a_forgotten_message_counts_its_redeliveries_afresh(self, store, route):
        store.count_redelivery(route, "msg-1")
        store.count_redelivery(route, "msg-2")
        store.forget_redeliveries(route, "msg-1")
        assert (store.count_redelivery(route, "msg-1"), store.count_redelivery(route, "msg-2")) == (1, 2)

    def test_a_redelivery_count_is_not_an_idempotency_record(self, store, route):
        store.count_redelivery(route, "C-1")
        assert store.get(route, "C-1") is None
        assert store.claim(route, "C-1", owner_id(), LEASE).status == CLAIMED


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
