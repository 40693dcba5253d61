"""The SFTP adapter and the inbound poller against a real sshd on loopback (and a real broker)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from esb.adapters.base import open_adapter
from esb.adapters.sftp import SftpAdapter
from esb.adapters.sftp_poller import FILE_MTIME, FILE_NAME, FILE_SHA256, FILE_SIZE, SftpPoller
from esb.adapters.spec import AdapterSpec
from esb.errors import ConfigError, PermanentError, TransientError
from esb.message import BINARY, XML, Message
from esb.runtime.broker import confirmed_publish
from esb.testing.sftp import SftpServer, SshdMissing
from esb.transform import jsoncodec

STATEMENT = "camt053.v2.minimal.xml"


@pytest.fixture(scope="module")
def sftp_server() -> Iterator[SftpServer]:
    try:
        server = SftpServer().start()
    except SshdMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def box(sftp_server: SftpServer, uid: str) -> str:
    """A directory of this test's own on the server, with outbox/ and inbox/."""
    for sub in ("outbox", "inbox"):
        (sftp_server.root / uid / sub).mkdir(parents=True)
    return uid


def adapter_spec(server: SftpServer, box: str, inbound: dict | None = None, **settings) -> AdapterSpec:
    operations = {"upload_payment": {"put": server.remote(f"{box}/outbox/{{message_id}}.xml")},
                  "upload_claim": {"put": server.remote(f"{box}/outbox/{{claim_id}}.json"), "atomic": True},
                  "upload_blob": {"put": server.remote(f"{box}/outbox/{{message_id}}.bin")},
                  "upload_nowhere": {"put": server.remote(f"{box}/missing/{{message_id}}.xml")}}
    return AdapterSpec("bank-sftp", "sftp", "adapters/bank-sftp.yaml",
                       {**server.adapter_settings(), "timeout": "10s", **settings}, operations, inbound or {})


@pytest.fixture
def adapter(sftp_server: SftpServer, box: str) -> Iterator[SftpAdapter]:
    opened = open_adapter(adapter_spec(sftp_server, box), Path("."))
    yield opened
    opened.close()


def logins(server: SftpServer) -> int:
    return server.log().count("Accepted publickey")


# -- uploads -----------------------------------------------------------------------------------
def test_an_upload_appears_under_its_final_name_with_the_exact_bytes_and_no_part_file(sftp_server, box, adapter):
    document = '<?xml version="1.0" encoding="UTF-8"?>\n<Document><Nm>Müller & Søn</Nm><Amt>1250.00</Amt></Document>'
    message = Message(document, XML, headers={"x-trace": "t-1"})
    response = adapter.call("upload_payment", message, idempotency_key="p-1:upload")
    outbox = sftp_server.root / box / "outbox"
    assert [p.name for p in outbox.iterdir()] == [f"{message.message_id}.xml"]
    assert (outbox / f"{message.message_id}.xml").read_bytes() == document.encode("utf-8")
    assert response.body == {"path": sftp_server.remote(f"{box}/outbox/{message.message_id}.xml"),
                             "size": len(document.encode("utf-8"))}
    assert response.message_id == message.message_id and response.headers["x-trace"] == "t-1"


def test_a_json_body_is_written_digit_for_digit_under_a_name_from_its_fields(sftp_server, box, adapter):
    message = Message({"claim_id": "EXP-42", "amount": Decimal("12.50"), "lines": [{"amount": Decimal("0.10")}]})
    adapter.call("upload_claim", message, idempotency_key="k")
    written = (sftp_server.root / box / "outbox" / "EXP-42.json").read_bytes()
    assert written == jsoncodec.dumps(message.body).encode() and b"12.50" in written


@pytest.mark.parametrize("claim_id", ["../../etc/cron.d/x", "a/b", "..", "", "bad\x00name", "line\nbreak"])
def test_a_field_value_that_could_leave_the_directory_is_refused_and_nothing_is_written(
        sftp_server, box, adapter, claim_id):
    with pytest.raises(PermanentError, match="cannot be part of a remote file name"):
        adapter.call("upload_claim", Message({"claim_id": claim_id}), idempotency_key="k")
    assert list((sftp_server.root / box).rglob("*.json")) == []


def test_a_missing_remote_directory_is_a_permanent_error(adapter):
    with pytest.raises(PermanentError, match="the server refused"):
        adapter.call("upload_nowhere", Message("<a/>", XML), idempotency_key="k")


def test_one_connection_serves_many_calls_and_is_reopened_after_the_server_drops_it(sftp_server, box, adapter):
    before = logins(sftp_server)
    for _ in range(3):
        adapter.call("upload_payment", Message("<a/>", XML), idempotency_key="k")
    assert logins(sftp_server) - before == 1
    sftp_server.drop_connections()
    adapter.call("upload_payment", Message("<a/>", XML), idempotency_key="k")
    assert logins(sftp_server) - before == 2
    assert len(list((sftp_server.root / box / "outbox").iterdir())) == 4


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_rsa_and_ecdsa_client_keys_work_as_well_as_ed25519(sftp_server, box, uid, kind):
    key = sftp_server.make_key(f"client-{kind}-{uid}", kind, authorize=True)
    adapter = open_adapter(adapter_spec(sftp_server, box, private_key=str(key)), Path("."))
    try:
        adapter.call("upload_payment", Message("<a/>", XML), idempotency_key="k")
    finally:
        adapter.close()
    assert len(list((sftp_server.root / box / "outbox").iterdir())) == 1


# -- failing closed ----------------------------------------------------------------------------
def test_a_changed_host_key_fails_closed_with_a_clear_sentence_and_uploads_nothing(sftp_server, box, uid, tmp_path):
    impostor = sftp_server.make_key(f"impostor-{uid}")
    pinned = tmp_path / "known_hosts"
    pinned.write_text(f"[127.0.0.1]:{sftp_server.port} {Path(f'{impostor}.pub').read_text()}")
    before = logins(sftp_server)
    adapter = open_adapter(adapter_spec(sftp_server, box, known_hosts=str(pinned)), Path("."))
    try:
        with pytest.raises(PermanentError) as caught:
            adapter.call("upload_payment", Message("<a/>", XML), idempotency_key="k")
    finally:
        adapter.close()
    text = str(caught.value)
    assert f"the host key of 127.0.0.1:{sftp_server.port} does not match {pinned}" in text
    assert sftp_server.host_key_fingerprint in text  # what the server offers, to compare with the bank's
    assert list((sftp_server.root / box / "outbox").iterdir()) == []
    assert logins(sftp_server) == before  # the client never authenticated


def test_an_unknown_host_fails_closed_and_is_never_added_to_known_hosts(sftp_server, box, tmp_path):
    pinned = tmp_path / "known_hosts"
    pinned.write_text("# nothing pinned yet\n")
    adapter = open_adapter(adapter_spec(sftp_server, box, known_hosts=str(pinned)), Path("."))
    try:
        with pytest.raises(PermanentError, match="does not match .*no key is pinned for it"):
            adapter.call("upload_payment", Message("<a/>", XML), idempotency_key="k")
    finally:
        adapter.close()
    assert pinned.read_text() == "# nothing pinned yet\n"
    assert list((sftp_server.root / box / "outbox").iterdir()) == []


def test_a_refused_login_is_permanent_and_never_shows_the_password(sftp_server, box, uid):
    stranger = sftp_server.make_key(f"stranger-{uid}")
    adapter = open_adapter(adapter_spec(sftp_server, box, private_key=str(stranger), password="pw-Zq8!s3cret"),
                           Path("."))
    try:
        with pytest.raises(PermanentError, match="authentication as 'root'|authentication as") as caught:
            adapter.call("upload_payment", Message("<a/>", XML), idempotency_key="k")
    finally:
        adapter.close()
    assert "pw-Zq8!s3cret" not in str(caught.value)


def test_a_missing_or_encrypted_private_key_is_a_config_error_that_does_not_show_its_path(sftp_server, box, tmp_path):
    locked = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(locked)], check=True)
    for key, problem in ((tmp_path / "absent_key", "does not exist"), (locked, "is encrypted")):
        with pytest.raises(ConfigError, match=problem) as caught:
            SftpAdapter(adapter_spec(sftp_server, box, private_key=str(key)), Path("."))
        assert str(key) not in str(caught.value)


# -- a dropped connection mid-upload -----------------------------------------------------------
def test_a_connection_dropped_mid_upload_leaves_no_file_under_its_name_and_the_retry_completes_it(
        sftp_server, box, adapter):
    body = os.urandom(20_000_000)
    message = Message(body, BINARY)
    outbox = sftp_server.root / box / "outbox"
    final, part = outbox / f"{message.message_id}.bin", outbox / f"{message.message_id}.bin.part"
    with ThreadPoolExecutor(max_workers=1) as pool:
        upload = pool.submit(adapter.call, "upload_blob", message, idempotency_key="k")
        deadline = time.monotonic() + 20
        while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert sftp_server.drop_connections() > 0
        with pytest.raises(TransientError):
            upload.result(60)
    assert not final.exists()
    assert part.exists() and part.stat().st_size < len(body)  # what the failed attempt left

    adapter.call("upload_payment", Message("<a/>", XML), idempotency_key="other")  # the next call cleans up
    assert not part.exists()

    response = adapter.call("upload_blob", message, idempotency_key="k")  # the retry
    assert final.read_bytes() == body
    assert response.body["size"] == len(body)
    assert not part.exists()


# -- the inbound poller ------------------------------------------------------------------------
def statement_bytes(testdata: Path) -> bytes:
    return (testdata / "iso20022" / "camt053" / STATEMENT).read_bytes()


def make_poller(server: SftpServer, box: str, bus, uid: str, tmp_path: Path, *, publish=None, lock=None,
                on_round=None, store=None, owner=None, **inbound) -> SftpPoller:
    """A poller of `box`/inbox; with `store`, one "machine": the store's ledger and leases, as `owner`."""
    config = {"poll": server.remote(f"{box}/inbox/*.xml"), "every": "1s", "archive": "done",
              "publish_to": {"exchange": f"bank.events.{uid}", "routing_key": "statement.camt053"}, **inbound}
    spec = adapter_spec(server, box, {"statements": config})
    shared = {} if store is None else {"ledger": store.inbound_ledger(), "leases": store.leases(), "owner": owner}
    return SftpPoller(spec, "statements", tmp_path, publish or confirmed_publish(bus.broker),
                      tmp_path / "sftp-ledger.sqlite3", lock, on_round=on_round, **shared)


def drop_file(server: SftpServer, box: str, name: str, data: bytes, mtime: float | None = None) -> Path:
    path = server.root / box / "inbox" / name
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_polled_file_is_published_with_its_headers_after_the_confirm_and_then_archived(
        sftp_server, box, bus, uid, tmp_path, testdata):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "statement.#")
    data = statement_bytes(testdata)
    drop_file(sftp_server, box, "stmt-0001.xml", data, mtime=1_735_689_600)
    drop_file(sftp_server, box, "notes.txt", b"not polled")
    poller = make_poller(sftp_server, box, bus, uid, tmp_path)
    try:
        assert poller.poll_once() == [sftp_server.remote(f"{box}/inbox/stmt-0001.xml")]
    finally:
        poller.close()
    [delivery] = bus.wait_for(f"statements-{uid}", 1)
    import hashlib
    sha256 = hashlib.sha256(data).hexdigest()
    assert delivery.body == data
    assert delivery.content_type == XML
    assert delivery.message_id == sha256
    assert {k: delivery.headers[k] for k in (FILE_NAME, FILE_SIZE, FILE_MTIME, FILE_SHA256)} == {
        FILE_NAME: "stmt-0001.xml", FILE_SIZE: len(data), FILE_MTIME: "2025-01-01T00:00:00Z", FILE_SHA256: sha256}
    inbox = sftp_server.root / box / "inbox"
    assert sorted(p.name for p in inbox.iterdir()) == ["done", "notes.txt"]
    assert (inbox / "done" / "stmt-0001.xml").read_bytes() == data


def test_files_are_taken_oldest_first_and_a_reused_name_is_archived_beside_the_old_one(
        sftp_server, box, bus, uid, tmp_path):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    drop_file(sftp_server, box, "b.xml", b"<b/>", mtime=1_000_000)
    drop_file(sftp_server, box, "a.xml", b"<a/>", mtime=2_000_000)
    poller = make_poller(sftp_server, box, bus, uid, tmp_path)
    try:
        assert [Path(p).name for p in poller.poll_once()] == ["b.xml", "a.xml"]
        drop_file(sftp_server, box, "a.xml", b"<a>again, other bytes</a>")
        assert [Path(p).name for p in poller.poll_once()] == ["a.xml"]
    finally:
        poller.close()
    got = bus.wait_for(f"statements-{uid}", 3)
    assert [d.body for d in got] == [b"<b/>", b"<a/>", b"<a>again, other bytes</a>"]
    assert len(list((sftp_server.root / box / "inbox" / "done").iterdir())) == 3


def test_a_crash_between_publish_and_archive_archives_on_the_next_poll_without_a_second_message(
        sftp_server, box, bus, uid, tmp_path, testdata):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    drop_file(sftp_server, box, "stmt.xml", statement_bytes(testdata))
    poller = make_poller(sftp_server, box, bus, uid, tmp_path)
    finish, crashes = poller._finish, []

    def crash_once(file, sha256):  # the ledger row is written; the process "dies" before the move
        if not crashes:
            crashes.append(file.path)
            raise TransientError("simulated crash before archiving")
        finish(file, sha256)

    poller._finish = crash_once
    try:
        assert poller.poll_once() == [sftp_server.remote(f"{box}/inbox/stmt.xml")]
        assert (sftp_server.root / box / "inbox" / "stmt.xml").exists()
        with sqlite3.connect(poller.ledger_path) as db:
            assert db.execute("SELECT count(*) FROM sftp_inbound WHERE finished_at IS NULL").fetchone() == (1,)
        assert poller.poll_once() == []  # already published: only archived
    finally:
        poller.close()
    bus.wait_for(f"statements-{uid}", 1)
    bus.settle()
    assert len(bus.received[f"statements-{uid}"]) == 1
    assert (sftp_server.root / box / "inbox" / "done" / "stmt.xml").exists()
    assert not (sftp_server.root / box / "inbox" / "stmt.xml").exists()


def test_a_file_over_max_bytes_is_left_in_place_with_an_error_and_not_published(sftp_server, box, bus, uid, tmp_path):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    drop_file(sftp_server, box, "huge.xml", b"<a>" + b"x" * 100 + b"</a>")
    drop_file(sftp_server, box, "small.xml", b"<a/>")
    with capture_logs() as logs:
        poller = make_poller(sftp_server, box, bus, uid, tmp_path, max_bytes=50)
        try:
            assert [Path(p).name for p in poller.poll_once()] == ["small.xml"]
        finally:
            poller.close()
    [error] = [e for e in logs if e["event"] == "sftp_file_too_large"]
    assert error["log_level"] == "error" and error["size"] == 107 and error["max_bytes"] == 50
    bus.wait_for(f"statements-{uid}", 1)
    bus.settle()
    assert [d.body for d in bus.received[f"statements-{uid}"]] == [b"<a/>"]
    assert (sftp_server.root / box / "inbox" / "huge.xml").exists()


def test_an_unroutable_file_stays_in_place_and_is_published_once_a_queue_is_bound(
        sftp_server, box, bus, uid, tmp_path):
    from esb.runtime.broker import Topology
    bus.broker.declare(Topology(((f"bank.events.{uid}", "topic"),)))  # an exchange nothing is bound to
    drop_file(sftp_server, box, "stmt.xml", b"<a/>")
    poller = make_poller(sftp_server, box, bus, uid, tmp_path)
    try:
        with capture_logs() as logs:
            assert poller.poll_once() == []
        assert any(e["event"] == "sftp_poll_failed" and "nothing is bound" in e["error"] for e in logs)
        assert (sftp_server.root / box / "inbox" / "stmt.xml").exists()
        bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
        assert len(poller.poll_once()) == 1
    finally:
        poller.close()
    assert [d.body for d in bus.wait_for(f"statements-{uid}", 1)] == [b"<a/>"]


def test_delete_removes_the_file_after_the_confirm(sftp_server, box, bus, uid, tmp_path):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    drop_file(sftp_server, box, "stmt.xml", b"<a/>")
    poller = make_poller(sftp_server, box, bus, uid, tmp_path, archive=None, delete=True)
    try:
        assert len(poller.poll_once()) == 1
    finally:
        poller.close()
    assert bus.wait_for(f"statements-{uid}", 1)[0].body == b"<a/>"
    assert list((sftp_server.root / box / "inbox").iterdir()) == []


class _GatedPublish:
    """The real confirmed publish, but each waits for `gate`: holds a poller inside its round."""

    def __init__(self, broker):
        self._publish = confirmed_publish(broker)
        self.entered, self.gate = threading.Event(), threading.Event()

    def __call__(self, *args) -> None:
        self.entered.set()
        assert self.gate.wait(30)
        self._publish(*args)


def test_of_two_pollers_sharing_a_lock_only_one_polls_at_a_time(sftp_server, box, bus, uid, tmp_path):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    drop_file(sftp_server, box, "stmt.xml", b"<a/>")
    gated = _GatedPublish(bus.broker)
    lock = tmp_path / "bank-sftp.lock"
    first = make_poller(sftp_server, box, bus, uid, tmp_path, publish=gated, lock=lock)
    second = make_poller(sftp_server, box, bus, uid, tmp_path, lock=lock)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            round_one = pool.submit(first.poll_once)
            assert gated.entered.wait(30)
            with capture_logs() as logs:
                assert second.poll_once() == []
            gated.gate.set()
            assert len(round_one.result(30)) == 1
        assert [e["event"] for e in logs] == ["sftp_poll_skipped"]
        assert second.poll_once() == []  # the lock is free again; the file is gone
    finally:
        first.close()
        second.close()
    bus.wait_for(f"statements-{uid}", 1)
    bus.settle()
    assert len(bus.received[f"statements-{uid}"]) == 1


def test_a_poller_skips_its_round_while_another_process_holds_the_lock(sftp_server, box, bus, uid, tmp_path):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    drop_file(sftp_server, box, "stmt.xml", b"<a/>")
    lock = tmp_path / "bank-sftp.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
                               "print('held', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    poller = make_poller(sftp_server, box, bus, uid, tmp_path, lock=lock)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert poller.poll_once() == []
        assert (sftp_server.root / box / "inbox" / "stmt.xml").exists()
        holder.stdin.close()
        holder.wait(10)
        assert len(poller.poll_once()) == 1
    finally:
        poller.close()
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        holder.stdout.close()
    assert bus.wait_for(f"statements-{uid}", 1)[0].body == b"<a/>"


def test_run_polls_every_interval_until_stopped(sftp_server, box, bus, uid, tmp_path):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    poller = make_poller(sftp_server, box, bus, uid, tmp_path, every="100ms")
    stop = threading.Event()
    runner = threading.Thread(target=poller.run, args=(stop,))
    runner.start()
    try:
        drop_file(sftp_server, box, "late.xml", b"<late/>")
        assert [d.body for d in bus.wait_for(f"statements-{uid}", 1)] == [b"<late/>"]
    finally:
        stop.set()
        runner.join(10)
        poller.close()
    assert not runner.is_alive()


def test_each_round_is_reported_with_the_files_it_took_and_whether_it_reached_its_end(
        sftp_server, box, bus, uid, tmp_path, testdata):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "statement.#")
    drop_file(sftp_server, box, "stmt-0001.xml", statement_bytes(testdata))
    drop_file(sftp_server, box, "stmt-0002.xml", statement_bytes(testdata).replace(b"<MsgId>", b"<MsgId>2"))
    rounds = []
    poller = make_poller(sftp_server, box, bus, uid, tmp_path, on_round=lambda *facts: rounds.append(facts))
    try:
        poller.poll_once()
        poller.poll_once()
        inbox = sftp_server.root / box / "inbox"
        inbox.rename(inbox.with_name("away"))  # the listing fails: a round that did not get through
        try:
            poller.poll_once()
        finally:
            inbox.with_name("away").rename(inbox)
    finally:
        poller.close()
    adapter = poller.adapter
    assert rounds == [(adapter, "statements", 2, True), (adapter, "statements", 0, True),
                      (adapter, "statements", 0, False)]


# -- one poller per inbound across machines ----------------------------------------------------
POSTGRES_URL = os.environ.get("POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")
EVERY = 0.2  # seconds between rounds; the lease lasts LEASE_ROUNDS of them


@pytest.fixture
def postgres_stores() -> Iterator:
    """A function opening a PostgresStore (one a "machine") on a schema of this test's own."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    from esb.store import PostgresStore
    schema = f"esb_test_{os.urandom(8).hex()}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as db:
            db.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {POSTGRES_URL} ({exc}); start it with scripts/ensure-services",
                    pytrace=False)
    url = make_conninfo(POSTGRES_URL, options=f"-csearch_path={schema}")
    opened: list = []

    def open_store():
        opened.append(PostgresStore(url))
        return opened[-1]
    yield open_store
    for store in opened:
        store.close()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")


class _Machines:
    """Two pollers of one inbox, each on a store of its own (two machines) over one database,
    each `run` in a thread; `published[owner]` lists the files each one published."""

    def __init__(self, sftp_server, box, bus, uid, tmp_path, postgres_stores, owners=("machine-a", "machine-b")):
        self.published: dict[str, list[str]] = {owner: [] for owner in owners}
        real = confirmed_publish(bus.broker)
        self.pollers, self.stops, self.threads = {}, {}, {}
        for owner in owners:
            def publish(exchange, key, body, content_type, headers, message_id, owner=owner):
                self.published[owner].append(headers[FILE_NAME])  # before the confirm: counts every attempt
                real(exchange, key, body, content_type, headers, message_id)
            self.pollers[owner] = make_poller(sftp_server, box, bus, uid, tmp_path / owner, publish=publish,
                                              store=postgres_stores(), owner=owner, every=f"{int(EVERY * 1000)}ms")

    def start(self, owner: str) -> None:
        self.stops[owner] = threading.Event()
        self.threads[owner] = threading.Thread(target=self.pollers[owner].run, args=(self.stops[owner],))
        self.threads[owner].start()

    def die(self, owner: str) -> None:
        """The machine stops polling and renewing, and releases nothing (close() is not called)."""
        self.stops[owner].set()
        self.threads[owner].join(10)

    def leader(self) -> str:
        return next(o for o, p in self.pollers.items() if p.leadership.token is not None and p.leadership._leading)

    def close(self) -> None:
        for owner in self.threads:
            self.stops[owner].set()
            self.threads[owner].join(10)
        for poller in self.pollers.values():
            poller.close()


@pytest.fixture
def machines(sftp_server, box, bus, uid, tmp_path, postgres_stores) -> Iterator[_Machines]:
    running = _Machines(sftp_server, box, bus, uid, tmp_path, postgres_stores)
    yield running
    running.close()


def test_of_two_machines_polling_one_inbox_only_the_lease_holder_polls_and_each_file_is_published_once(
        sftp_server, box, bus, uid, machines):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    with capture_logs() as logs:
        for owner in machines.pollers:
            machines.start(owner)
        for i in range(8):
            drop_file(sftp_server, box, f"stmt-{i}.xml", f"<stmt n='{i}'/>".encode())
            time.sleep(EVERY / 2)
        got = bus.wait_for(f"statements-{uid}", 8)
        time.sleep(EVERY * 3)  # rounds enough for a second poller to publish again, were there one
    bus.settle()
    assert sorted(d.body for d in bus.received[f"statements-{uid}"]) == sorted(d.body for d in got)
    assert len(bus.received[f"statements-{uid}"]) == 8
    leader = machines.leader()
    standby = next(o for o in machines.pollers if o != leader)
    assert sorted(machines.published[leader]) == [f"stmt-{i}.xml" for i in range(8)]
    assert machines.published[standby] == []
    changes = [(e["event"], e["owner"]) for e in logs if e["event"].startswith("sftp_poller_")]
    assert sorted(changes) == [("sftp_poller_leader", leader), ("sftp_poller_standby", standby)]  # once each


def test_when_the_leader_dies_the_other_machine_takes_over_within_the_lease_and_one_interval(
        sftp_server, box, bus, uid, machines):
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    for owner in machines.pollers:
        machines.start(owner)
    drop_file(sftp_server, box, "before.xml", b"<before/>")
    bus.wait_for(f"statements-{uid}", 1)
    dead = machines.leader()
    survivor = next(o for o in machines.pollers if o != dead)
    first_token = machines.pollers[dead].leadership.token
    with capture_logs() as logs:
        machines.die(dead)
        died = time.monotonic()
        drop_file(sftp_server, box, "after.xml", b"<after/>")
        got = bus.wait_for(f"statements-{uid}", 2)
        took = time.monotonic() - died
    ttl = machines.pollers[survivor].leadership.ttl
    assert [d.body for d in got] == [b"<before/>", b"<after/>"]
    assert machines.published == {dead: ["before.xml"], survivor: ["after.xml"]}
    # the bound: the dead leader's lease, one interval of the survivor, then one round and the delivery
    # (measured here: 0.81-1.06 s with a lease of 0.6 s and rounds every 0.2 s)
    assert took <= ttl + EVERY + 0.5, f"took over after {took:.2f} s (lease {ttl} s, every {EVERY} s)"
    [leader] = [e for e in logs if e["event"] == "sftp_poller_leader"]
    assert leader["owner"] == survivor and leader["token"] == first_token + 1


def test_a_leader_paused_past_its_lease_publishes_nothing_once_another_took_over(
        sftp_server, box, bus, uid, tmp_path, postgres_stores):
    """Fencing: the leader stalls after downloading (a long GC, a frozen VM); the other machine
    takes over and publishes; the old leader, resuming, finds its token stale and stops."""
    bus.listen(f"statements-{uid}", f"bank.events.{uid}", "#")
    drop_file(sftp_server, box, "stmt.xml", b"<stmt/>")
    running = _Machines(sftp_server, box, bus, uid, tmp_path, postgres_stores)
    paused, resume = threading.Event(), threading.Event()
    stalled = running.pollers["machine-a"]
    ledger = stalled.ledger

    class StallingLedger:  # machine-a stalls between its download and its publish
        def __getattr__(self, name):
            return getattr(ledger, name)

        def published(self, *args):
            paused.set()
            assert resume.wait(30)
            return ledger.published(*args)

    stalled.ledger = StallingLedger()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            round_a = pool.submit(stalled.poll_once)
            assert paused.wait(30)
            time.sleep(stalled.leadership.ttl + 0.1)  # machine-a's lease runs out while it stalls
            with capture_logs() as logs:
                assert running.pollers["machine-b"].poll_once() == [sftp_server.remote(f"{box}/inbox/stmt.xml")]
                resume.set()
                assert round_a.result(30) == []
        assert [(e["event"], e["owner"], e.get("leader")) for e in logs if e["event"].startswith("sftp_poller_")] == [
            ("sftp_poller_leader", "machine-b", None), ("sftp_poller_standby", "machine-a", "machine-b")]
    finally:
        resume.set()
        running.close()
    bus.wait_for(f"statements-{uid}", 1)
    bus.settle()
    assert [d.body for d in bus.received[f"statements-{uid}"]] == [b"<stmt/>"]
    assert running.published == {"machine-a": [], "machine-b": ["stmt.xml"]}
