"""The SFTP poller's lease, without a server: who polls, what a standby does, and how the runtime
hands the store's leases to its pollers. (Against a real sshd and PostgreSQL: tests/integration/test_sftp.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from esb.adapters.sftp_poller import LEASE_ROUNDS, SftpPoller
from esb.adapters.spec import AdapterSpec
from esb.store import SqliteStore, StoreUnavailable

ROOT = Path(__file__).resolve().parents[3]
LEASE = "sftp:bank-sftp:statements"


def write_key(path: Path) -> Path:
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    return path


@pytest.fixture
def store(tmp_path):
    opened = SqliteStore(tmp_path / "var" / "idempotency.sqlite3")
    yield opened
    opened.close()


def make_poller(tmp_path: Path, leases, owner: str, every: str = "2s") -> SftpPoller:
    """A poller of a server that is not there (port 9 on loopback): a round that connects fails."""
    (tmp_path / "known_hosts").write_text("")
    settings = {"host": "127.0.0.1", "port": 9, "username": "esb", "known_hosts": str(tmp_path / "known_hosts"),
                "private_key": str(write_key(tmp_path / "client_key")), "timeout": "1s"}
    inbound = {"statements": {"poll": "/inbox/*.xml", "every": every, "archive": "done",
                              "publish_to": {"exchange": "bank.events", "routing_key": "statement.camt053"}}}
    spec = AdapterSpec("bank-sftp", "sftp", "adapters/bank-sftp.yaml", settings, {}, inbound)
    return SftpPoller(spec, "statements", tmp_path, lambda *a: None, "var/sftp-inbound.sqlite3",
                      leases=leases, owner=owner)


def test_a_standby_poller_skips_its_round_without_connecting_to_the_server(tmp_path, store):
    leases = store.leases()
    assert leases.acquire(LEASE, "machine-a", 60) == 1
    poller = make_poller(tmp_path, leases, "machine-b")
    try:
        with capture_logs() as logs:
            assert poller.poll_once() == [] and poller.poll_once() == []
    finally:
        poller.close()
    assert [(e["event"], e["leader"]) for e in logs] == [("sftp_poller_standby", "machine-a")]  # once, not each round
    assert leases.holder(LEASE).owner == "machine-a"  # closing a standby releases nothing


def test_the_leader_holds_the_lease_for_three_poll_intervals_and_releases_it_when_closed(tmp_path, store):
    leases = store.leases()
    poller = make_poller(tmp_path, leases, "machine-a", every="2s")
    with capture_logs() as logs:
        poller.poll_once()  # leads, then fails to connect: the lease is kept all the same
    [leader] = [e for e in logs if e["event"] == "sftp_poller_leader"]
    assert leader["token"] == 1 and leader["ttl"] == LEASE_ROUNDS * 2.0 == 6.0
    assert any(e["event"] == "sftp_poll_failed" for e in logs)
    assert leases.holder(LEASE).owner == "machine-a"
    poller.close()
    assert leases.holder(LEASE) is None
    assert leases.acquire(LEASE, "machine-b", 60) == 2


def test_a_store_that_fails_while_leading_skips_the_round_with_one_error(tmp_path, store):
    class Down:
        def acquire(self, *args):
            raise StoreUnavailable("the idempotency store at postgresql://esb:***@db/esb failed: connection refused")

    poller = make_poller(tmp_path, Down(), "machine-a")
    try:
        with capture_logs() as logs:
            assert poller.poll_once() == []
    finally:
        poller.close()
    assert [(e["event"], e["error_class"]) for e in logs] == [("sftp_poll_failed", "lease")]
    assert "connection refused" in logs[0]["error"]


def test_the_runtimes_pollers_hold_the_stores_lease_of_their_inbound_as_the_runtimes_owner(tmp_path, store):
    from esb.loading.envfile import read_env_file
    from esb.loading.project import load_project
    from esb.runtime.kombu_broker import KombuBroker
    from esb.runtime.runtime import Runtime
    env = {**read_env_file(ROOT / "config" / "demo.env"), "BANK_SFTP_KEY_FILE": str(write_key(tmp_path / "client_key"))}
    runtime = Runtime(load_project(ROOT, env), KombuBroker("memory://"), store=store, owner="host-a:1:abcd",
                      pollers=True, adapters=object())
    assert runtime.pollers
    for poller in [p for p in runtime.pollers if p.adapter != "schedule"]:  # scheduled routes run beside them
        assert poller.leadership.name == f"sftp:{poller.adapter}:{poller.inbound}"
        assert poller.leadership.owner == "host-a:1:abcd"
        assert poller.leadership.ttl == LEASE_ROUNDS * poller.every
        assert poller.leadership.leases._store is store
