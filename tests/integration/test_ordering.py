"""Order per key across worker processes on RabbitMQ: each account's postings reach the ledger in
the order they were published, through transient failures and a worker killed with SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from integration_helpers import consumers, dead_letters, queue_counts, wait_until, write_project
from test_bus import LEDGER_ADAPTER

from esb.runtime.broker import Outgoing, wait_all
from esb.runtime.ordering import partition_of
from esb.testing.ledger import StandInLedger

LEDGER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 10s
operations:
  create_voucher: {{method: POST, path: /vouchers}}
"""

ROUTE = """\
name: o-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
ordering: {{key: account, partitions: 8}}
concurrency: 8
idempotency: {{key: posting_id}}
retry: {{attempts: 20, in_process: 0, backoff: {{initial: 50ms, multiplier: 2, max: 400ms}}}}
steps:
  - label: post
    to: {{adapter: ledger, operation: create_voucher}}
"""

ACCOUNTS, POSTINGS = 20, 100


class Worker:
    """`esb run` in a process of its own."""

    def __init__(self, root: Path, url: str, name: str):
        self.log = open(root / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "esb.cli.main", "--root", str(root), "--log-level", "info", "run",
                   "--workers", "1", "--broker", url]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        self.log.close()


def flaky(ledger: StandInLedger, stop: threading.Event) -> None:
    """Random transient failures, as many as the traffic: after every 5 to 30 voucher posts, the next
    one to three get a 503 (a clock-driven fault would pile up while nothing is posted)."""
    rng = random.Random(12)
    while not stop.is_set():
        due = len(ledger.server.requests) + rng.randint(5, 30)
        while len(ledger.server.requests) < due and not stop.wait(0.01):
            pass
        ledger.fail_next("/vouchers", 503, times=rng.randint(1, 3))


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []
    yield lambda url, name: started.append(Worker(tmp_path, url, name)) or started[-1]
    for worker in started:
        worker.stop()
    if os.environ.get("ESB_SHOW_WORKER_LOG"):
        for log in tmp_path.glob("*.log"):
            print(log.name, log.read_text(errors="replace")[-20000:])


def test_each_accounts_postings_reach_the_ledger_in_sequence_through_failures_and_a_killed_worker(
        tmp_path, uid, rabbit_url, rabbit_bus, workers):
    route = f"o-{uid}"
    with StandInLedger() as ledger:
        write_project(tmp_path, {"adapters/ledger.yaml": LEDGER.format(url=ledger.url),
                                 "routes/o.yaml": ROUTE.format(uid=uid),
                                 "config/esb.yaml": "store: {kind: sqlite, path: var/idem.sqlite3}\n"})
        first = workers(rabbit_url, "first")
        wait_until(lambda: consumers(rabbit_url, f"{route}.p7") >= 1, 30, "the first worker did not start")
        workers(rabbit_url, "second")  # stands by: the broker gives it the queues when the first goes
        wait_until(lambda: consumers(rabbit_url, f"{route}.p7") >= 2, 30, "the second worker did not start")

        stop_failing = threading.Event()
        threading.Thread(target=flaky, args=(ledger, stop_failing), daemon=True).start()
        started = time.monotonic()
        confirmations = []
        for seq in range(POSTINGS):  # interleaved, as a bank gateway would send them
            for account in range(ACCOUNTS):
                body = json.dumps({"posting_id": f"{uid}-{account}-{seq}", "account": f"ACC{account:02d}",
                                   "seq": seq, "amount": "10.00"}).encode()
                confirmations.append(rabbit_bus.broker.publish(
                    f"in-{uid}", "posting", Outgoing(body, "application/json", {}, f"{uid}-{account}-{seq}")))
        assert wait_all(confirmations, 30) and all(c.exception() is None for c in confirmations)

        total = ACCOUNTS * POSTINGS
        wait_until(lambda: len(ledger.effects) >= total // 3, 60, "a third of the postings did not arrive")
        assert len(ledger.effects) < total, "the first worker finished before it could be killed"
        first.kill()
        wait_until(lambda: len(ledger.effects) >= total, 75 - (time.monotonic() - started),
                   "not every posting reached the ledger")
        stop_failing.set()
        time.sleep(1.0)  # a late duplicate effect would show up now
        elapsed = time.monotonic() - started

    seen: dict[str, list[int]] = defaultdict(list)
    for _, _, body in list(ledger.effects.values()):  # in the order the ledger applied them
        posting = json.loads(body)
        seen[posting["account"]].append(posting["seq"])
    failed = sum(1 for r in ledger.server.requests if r.path == "/vouchers") - total
    print(f"{total} postings in {elapsed:.1f} s; {failed} voucher posts failed or were repeated")
    assert len(seen) == ACCOUNTS
    out_of_order = {a: next((i, seq) for i, seq in enumerate(s + [None]) if seq != i)
                    for a, s in seen.items() if s != list(range(POSTINGS))}
    assert not out_of_order, f"postings out of sequence (account: (position, posting seen there)): {out_of_order}"
    assert failed > 0, "no transient failure happened: the test proved nothing about retries"
    assert queue_counts(rabbit_url, f"{route}.dlq")[0] == 0, "a posting was dead-lettered"


ORDERED = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
ordering: {{key: account, partitions: 4}}
concurrency: 4
idempotency: {{key: posting_id}}
retry: {{attempts: 5, in_process: 0, backoff: {{initial: 300ms, multiplier: 1, max: 1s}}}}
steps:
  - label: post
    to: {{adapter: ledger, operation: create_voucher}}
"""


def posting(account: str, seq: int) -> bytes:
    return json.dumps({"posting_id": f"{account}-{seq}", "account": account, "seq": seq, "amount": "1.00"}).encode()


def test_a_retried_posting_holds_back_later_postings_of_its_account_but_not_other_accounts(
        bus, run_routes, stand_in, uid):
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=stand_in.url),
                "routes/r.yaml": ORDERED.format(uid=uid)})
    slow, other = "ACC-1", next(a for a in (f"ACC-{n}" for n in range(2, 50)) if partition_of(a, 4) != partition_of(
        "ACC-1", 4))
    stand_in.fail_next("/vouchers", 503)  # the first posting fails: it waits 300 ms in place, then posts
    bus.send(f"in-{uid}", "posting", posting(slow, 1))
    wait_until(lambda: len(stand_in.server.requests) == 1, 5, "the first posting did not reach the ledger")
    for message in (posting(slow, 2), posting(other, 1), posting(slow, 3)):
        bus.send(f"in-{uid}", "posting", message)
    wait_until(lambda: len(stand_in.effects) >= 4, 15, "not every posting reached the ledger")
    applied = [(p["account"], p["seq"]) for p in (json.loads(b) for _, _, b in stand_in.effects.values())]
    assert [seq for account, seq in applied if account == slow] == [1, 2, 3]
    assert applied[0] == (other, 1), f"the other account waited for the retried one: {applied}"


def test_a_posting_without_its_ordering_key_is_dead_lettered_saying_so(bus, run_routes, stand_in, uid):
    runtime = run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=stand_in.url),
                          "routes/r.yaml": ORDERED.format(uid=uid)})
    bus.send(f"in-{uid}", "posting", json.dumps({"posting_id": "P-1", "amount": "1.00"}).encode())
    [letter] = dead_letters(bus, runtime, f"r-{uid}", 1)
    assert letter.error_class == "no_order_key"
    assert "the ordering key account is missing from the message" in letter.reason
    assert stand_in.effects == {}
