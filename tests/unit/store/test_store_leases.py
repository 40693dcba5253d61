"""The lease contract (esb.store.leases), run against SQLite, the real Redis and the real PostgreSQL.

Leases run out on the fake clock; only the tests with threads or processes use the real one."""

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from structlog.testing import capture_logs

from esb.store import open_store
from esb.store.leases import Leadership, Lease
from esb.store.owners import _HOST

TTL = 30.0
A, B = "machine-a:poller", "machine-b:poller"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def opened(request, tmp_path, clock):
    """(store kind, a function opening another store on the same backend and clock)."""
    url = request.getfixturevalue(f"{request.param}_url") if request.param != "sqlite" else ""
    stores = []

    def open_one(clock=clock):
        stores.append(open_store(request.param, str(tmp_path / "store.sqlite3"), url, clock=clock))
        return stores[-1]
    yield open_one
    for store in stores:
        store.close()


@pytest.fixture
def leases(opened):
    return opened().leases()


@pytest.fixture
def name() -> str:
    return f"sftp:bank-sftp:statements-{uuid.uuid4().hex[:8]}"


def test_one_owner_holds_a_lease_and_another_gets_none_while_it_lives(leases, name, clock):
    assert leases.acquire(name, A, TTL) == 1
    assert leases.acquire(name, B, TTL) is None
    assert leases.holder(name) == Lease(name, A, 1, clock.now + TTL)


def test_the_holder_acquiring_again_keeps_its_token_and_extends_the_lease(leases, name, clock):
    token = leases.acquire(name, A, TTL)
    clock.advance(TTL - 1)
    assert leases.acquire(name, A, TTL) == token
    clock.advance(TTL - 1)
    assert leases.acquire(name, B, TTL) is None


def test_an_expired_lease_is_taken_over_with_the_next_token(leases, name, clock):
    assert leases.acquire(name, A, TTL) == 1
    clock.advance(TTL)
    assert leases.acquire(name, B, TTL) == 2
    assert leases.holder(name).owner == B
    assert leases.acquire(name, A, TTL) is None


def test_renew_by_the_holder_extends_the_lease(leases, name, clock):
    token = leases.acquire(name, A, TTL)
    clock.advance(TTL - 1)
    assert leases.renew(name, A, token, TTL) is True
    clock.advance(TTL - 1)
    assert leases.acquire(name, B, TTL) is None
    assert leases.holder(name).until == clock.now + 1


def test_renew_by_another_owner_or_with_another_token_fails_and_changes_nothing(leases, name, clock):
    token = leases.acquire(name, A, TTL)
    assert leases.renew(name, B, token, TTL) is False
    assert leases.renew(name, A, token + 1, TTL) is False
    assert leases.renew(f"{name}-unknown", A, token, TTL) is False
    assert leases.holder(name) == Lease(name, A, token, clock.now + TTL)


def test_a_stale_holders_renew_fails_once_another_took_the_lease(leases, name, clock):
    stale = leases.acquire(name, A, TTL)
    clock.advance(TTL + 5)  # A was paused past its lease
    assert leases.acquire(name, B, TTL) == stale + 1
    assert leases.renew(name, A, stale, TTL) is False
    assert leases.holder(name).owner == B


def test_a_holder_renewing_late_keeps_its_lease_when_no_one_took_it(leases, name, clock):
    token = leases.acquire(name, A, TTL)
    clock.advance(TTL + 5)
    assert leases.renew(name, A, token, TTL) is True
    assert leases.acquire(name, B, TTL) is None


def test_release_lets_another_owner_take_the_lease_at_once(leases, name):
    token = leases.acquire(name, A, TTL)
    leases.release(name, A, token)
    assert leases.holder(name) is None
    assert leases.acquire(name, B, TTL) == token + 1


def test_release_by_a_stale_holder_changes_nothing(leases, name, clock):
    stale = leases.acquire(name, A, TTL)
    clock.advance(TTL)
    taken = leases.acquire(name, B, TTL)
    leases.release(name, A, stale)
    assert leases.holder(name) == Lease(name, B, taken, clock.now + TTL)


def test_the_token_goes_up_each_time_the_lease_changes_hands_even_back_to_an_earlier_owner(leases, name, clock):
    tokens = []
    for owner in (A, B, A, A):
        tokens.append(leases.acquire(name, owner, TTL))
        leases.release(name, owner, tokens[-1])
    clock.advance(1)
    tokens.append(leases.acquire(name, B, TTL))
    clock.advance(TTL)
    tokens.append(leases.acquire(name, B, TTL))  # the same owner after its lease ran out: a new term
    assert tokens == [1, 2, 3, 4, 5, 6]


def test_each_name_is_a_lease_of_its_own(leases, name):
    assert leases.acquire(name, A, TTL) == 1
    assert leases.acquire(f"{name}-other", B, TTL) == 1


def test_a_lease_held_by_a_gone_process_of_this_host_is_taken_over_at_once(leases, name):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert leases.acquire(name, f"{_HOST}:{gone}:dead", TTL) == 1
    assert leases.acquire(name, B, TTL) == 2


def test_two_stores_on_one_backend_see_one_lease(opened, name, clock):
    first, second = opened().leases(), opened().leases()
    assert first.acquire(name, A, TTL) == 1
    assert second.acquire(name, B, TTL) is None
    clock.advance(TTL)
    assert second.acquire(name, B, TTL) == 2
    assert first.renew(name, A, 1, TTL) is False


def test_threads_acquiring_one_lease_at_once_get_exactly_one_holder(opened, name):
    leases = opened(time.time).leases()
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(lambda i: leases.acquire(name, f"owner-{i}", TTL), range(16)))
    assert sorted(tokens, key=lambda t: t is None) == [1] + [None] * 15


def test_leadership_logs_leader_and_standby_only_when_that_changes(leases, name, clock):
    import structlog
    log = structlog.get_logger("test")
    a, b = (Leadership(leases, name, owner, TTL, log, "sftp_poller") for owner in (A, B))
    with capture_logs() as logs:
        assert a.lead() and a.lead() and not b.lead() and not b.lead()
        clock.advance(TTL)
        assert b.lead() and not a.still_leading() and not a.lead()
    assert [(e["event"], e["owner"], e.get("token"), e.get("leader")) for e in logs] == [
        ("sftp_poller_leader", A, 1, None), ("sftp_poller_standby", B, None, A),
        ("sftp_poller_leader", B, 2, None), ("sftp_poller_standby", A, None, B)]
    b.step_down()
    assert a.lead() and a.token == 3


def test_a_mark_set_on_one_machine_is_read_on_the_other_and_replaced_by_the_next(opened, name):
    """Marks (esb.store.marks: the last fire time of a schedule) live beside the leases."""
    one, other = opened().marks(), opened().marks()
    assert one.get(name) is None
    one.set(name, "2026-12-07T08:00:00+08:00")
    assert other.get(name) == "2026-12-07T08:00:00+08:00"
    other.set(name, "2026-12-08T08:00:00+08:00")
    assert one.get(name) == "2026-12-08T08:00:00+08:00"
