"""What the PostgreSQL store does beyond the contract: two machines on one database, a dropped
connection, a server that is down, and the SFTP inbound ledger every machine shares."""

import time
from types import SimpleNamespace

import psycopg
import pytest
from conftest import FakeClock

from esb.store import (
    BUSY,
    CLAIMED,
    DONE,
    LeaseLost,
    PostgresStore,
    SqliteInboundLedger,
    SqliteStore,
    StepRecord,
    StoreUnavailable,
    inbound_ledger,
    open_store,
)

LEASE = 60
MACHINE_A, MACHINE_B = "machine-a:4242:aaaa0001", "machine-b:4242:bbbb0002"  # workers of two other hosts
POSTED = StepRecord(2, "post-voucher", {"body": {"voucher_id": "V-1"}, "headers": {}},
                    {"adapter": "ledger-rest", "operation": "cancel_voucher"})
STATEMENT = SimpleNamespace(path="/inbox/camt053-2024-03-01.xml", size=18_412, mtime=1_709_280_000)


@pytest.fixture
def machines(postgres_url, clock):
    """Two stores on one database, as two machines would open them (their clocks agree, as NTP has them)."""
    a, b = open_store("postgres", "", postgres_url, clock=clock), open_store("postgres", "", postgres_url, clock=clock)
    yield a, b
    a.close()
    b.close()


def test_a_claim_on_one_machine_is_busy_on_the_other_until_its_lease_runs_out(machines, clock):
    a, b = machines
    assert a.claim("post-expense", "EXP-1", MACHINE_A, LEASE).status == CLAIMED
    assert b.claim("post-expense", "EXP-1", MACHINE_B, LEASE).status == BUSY
    a.record_step("post-expense", "EXP-1", MACHINE_A, POSTED)
    clock.advance(LEASE)  # machine A died mid-message
    claim = b.claim("post-expense", "EXP-1", MACHINE_B, LEASE)
    assert (claim.status, claim.progress) == (CLAIMED, (POSTED,))  # B resumes after the posted voucher
    with pytest.raises(LeaseLost, match=MACHINE_B):
        a.record_step("post-expense", "EXP-1", MACHINE_A, POSTED)


def test_a_message_finished_on_one_machine_is_done_on_the_other(machines):
    a, b = machines
    a.claim("post-expense", "EXP-1", MACHINE_A, LEASE)
    a.finish("post-expense", "EXP-1", MACHINE_A, {"voucher_id": "V-1"})
    claim = b.claim("post-expense", "EXP-1", MACHINE_B, LEASE)
    assert (claim.status, claim.outcome) == (DONE, {"voucher_id": "V-1"})
    assert (b.get("post-expense", "EXP-1").state, b.get("post-expense", "EXP-1").owner) == (DONE, MACHINE_A)


def test_of_two_machines_claiming_the_same_keys_at_once_each_key_is_claimed_once(machines):
    from concurrent.futures import ThreadPoolExecutor

    a, b = machines
    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(store.claim, "post-expense", f"EXP-{i}", owner, LEASE)
                for i in range(100) for store, owner in ((a, MACHINE_A), (b, MACHINE_B))]
        statuses = [job.result().status for job in jobs]
    assert [sorted(statuses[i:i + 2]) for i in range(0, 200, 2)] == [[BUSY, CLAIMED]] * 100


def _drop_connections(url: str) -> int:
    """Terminate every server process serving this test's stores (they carry its application_name)."""
    name = psycopg.conninfo.conninfo_to_dict(url)["application_name"]
    with psycopg.connect(url, autocommit=True) as admin:
        return len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = %s AND pid <> pg_backend_pid()", (name,)).fetchall())


def test_a_connection_dropped_while_idle_in_the_pool_is_replaced_before_the_next_call(postgres_url, clock):
    store = PostgresStore(postgres_url, clock=clock)
    try:
        store.claim("post-expense", "EXP-1", MACHINE_A, LEASE)
        assert _drop_connections(postgres_url) >= 1
        time.sleep(1.1)  # idle past the check threshold, as after a database restart
        assert store.claim("post-expense", "EXP-1", MACHINE_B, LEASE).status == BUSY
        assert store.claim("post-expense", "EXP-2", MACHINE_B, LEASE).status == CLAIMED
    finally:
        store.close()


def test_a_connection_dropped_under_a_busy_store_fails_a_call_as_transient_never_with_a_wrong_answer(
        postgres_url, clock):
    store = PostgresStore(postgres_url, clock=clock)
    try:
        store.claim("post-expense", "EXP-1", MACHINE_A, LEASE)
        assert _drop_connections(postgres_url) >= 1
        answers = []
        for _ in range(3):  # at once: not idle long enough to be checked
            try:
                answers.append(store.claim("post-expense", "EXP-1", MACHINE_B, LEASE).status)
            except StoreUnavailable as exc:
                answers.append("transient")
                assert "terminat" in str(exc) or "closed" in str(exc), exc
        assert answers[-1] == BUSY and set(answers) <= {BUSY, "transient"}
        assert store.get("post-expense", "EXP-1").owner == MACHINE_A
    finally:
        store.close()


def test_an_unreachable_postgres_is_a_transient_error_with_the_reason_and_without_the_password():
    store = PostgresStore("postgresql://esb:s3cret@127.0.0.1:1/esb", timeout=2)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.claim("post-expense", "EXP-1", MACHINE_A, LEASE)
        with pytest.raises(StoreUnavailable):  # and again: the store tries afresh each time
            store.count_redelivery("post-expense", "msg-1")
    finally:
        store.close()
    assert "s3cret" not in str(caught.value)
    assert "esb:***@127.0.0.1:1/esb" in str(caught.value) and "refused" in str(caught.value)


def test_a_store_opened_before_a_fork_works_in_the_child(postgres_url):
    import multiprocessing

    store = PostgresStore(postgres_url)
    store.claim("post-expense", "EXP-1", MACHINE_A, LEASE)  # the parent's pool is open
    child = multiprocessing.get_context("fork").Process(target=_claim_in_child, args=(store,))
    child.start()
    child.join(30)
    try:
        assert child.exitcode == 0
        assert store.get("post-expense", "EXP-2").owner == MACHINE_B
    finally:
        store.close()


def _claim_in_child(store: PostgresStore) -> None:
    assert store.claim("post-expense", "EXP-2", MACHINE_B, LEASE).status == CLAIMED
    store.close()


# --- the SFTP inbound ledger ------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgres"])
def two_ledgers(request, tmp_path):
    """The ledgers two pollers get: of one machine's file (SQLite), of one database (PostgreSQL)."""
    if request.param == "sqlite":
        path = tmp_path / "var" / "sftp-inbound.sqlite3"
        yield SqliteInboundLedger(path), SqliteInboundLedger(path)
        return
    url = request.getfixturevalue("postgres_url")
    a, b = PostgresStore(url), PostgresStore(url)
    yield a.inbound_ledger(), b.inbound_ledger()
    a.close()
    b.close()


def test_a_file_published_by_one_poller_is_seen_and_published_for_the_other(two_ledgers):
    a, b = two_ledgers
    assert not b.seen("bank-sftp", "statements", STATEMENT)
    a.record("bank-sftp", "statements", STATEMENT, "ab" * 32)
    a.finished("bank-sftp", "statements", STATEMENT, "ab" * 32)
    assert b.seen("bank-sftp", "statements", STATEMENT)
    assert b.published("bank-sftp", "statements", STATEMENT, "ab" * 32)
    assert not b.published("bank-sftp", "statements", STATEMENT, "cd" * 32)  # same name and size, other bytes
    assert not b.seen("bank-sftp", "other-inbound", STATEMENT)
    a.record("bank-sftp", "statements", STATEMENT, "ab" * 32)  # recorded twice (a crash before the archive): fine


def test_the_postgres_store_offers_its_ledger_and_the_others_leave_the_file(postgres_url, tmp_path):
    store = PostgresStore(postgres_url)
    try:
        store.inbound_ledger().record("bank-sftp", "statements", STATEMENT, "ab" * 32)
        assert inbound_ledger(store, tmp_path / "unused.sqlite3").seen("bank-sftp", "statements", STATEMENT)
        assert not (tmp_path / "unused.sqlite3").exists()
    finally:
        store.close()
    sqlite = SqliteStore(tmp_path / "idempotency.sqlite3")
    assert isinstance(inbound_ledger(sqlite, tmp_path / "sftp-inbound.sqlite3"), SqliteInboundLedger)
    sqlite.close()


def test_a_ledger_that_cannot_be_written_is_a_transient_error_naming_its_file(tmp_path):
    (tmp_path / "var").write_text("a file where the folder should be")
    ledger = SqliteInboundLedger(tmp_path / "var" / "sftp-inbound.sqlite3", clock=FakeClock())
    with pytest.raises(StoreUnavailable, match="the SFTP inbound ledger .*sftp-inbound.sqlite3 failed"):
        ledger.seen("bank-sftp", "statements", STATEMENT)


def test_threads_meeting_a_database_that_does_not_answer_fail_together_not_one_timeout_after_another():
    import socket
    from concurrent.futures import ThreadPoolExecutor

    with socket.create_server(("127.0.0.1", 0), backlog=64) as silent:  # takes connections, never answers
        store = PostgresStore(f"postgresql://esb@127.0.0.1:{silent.getsockname()[1]}/esb", timeout=2)
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(8) as pool:
                jobs = [pool.submit(store.claim, "post-expense", f"EXP-{i}", MACHINE_A, LEASE) for i in range(8)]
            assert all(isinstance(job.exception(), StoreUnavailable) for job in jobs)
        finally:
            store.close()
    assert time.monotonic() - started < 6  # one connect timeout (2 s), not eight in a row
