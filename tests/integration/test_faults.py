"""Faults against real worker processes on RabbitMQ, checked the way Jepsen checks queues:
every message has a unique id; drain everything; lost = 0, unexpected = 0, and the ledger
applied exactly one effect per idempotency key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pika
import pika.exceptions
import pytest
from conftest import Bus, write_project  # noqa: E402  (tests/integration is on sys.path)

from esb.runtime.broker import NotConfirmed
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
name: f-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
concurrency: {concurrency}
idempotency: {{key: claim_id}}
retry: {{attempts: 10, in_process: 1, backoff: {{initial: 200ms, multiplier: 2, max: 2s}}}}
steps:
  - label: post-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt}}
  - publish: {{exchange: out-{uid}, routing_key: voucher}}
"""


@pytest.fixture
def ledger():
    with StandInLedger() as stand_in:
        yield stand_in


class Worker:
    """`esb run` in a process of its own, as an operator would start it."""

    def __init__(self, root, url, log):
        self.root, self.url, self.log = root, url, log
        self.process = None

    def start(self, queue: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "esb.cli.main", "--root", str(self.root), "--log-level", "info", "run",
             "--workers", "1", "--broker", self.url], stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: consumers(self.url, queue) >= 1, 30, "the worker did not start consuming")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


def consumers(url: str, queue: str) -> int:
    """Consumers on `queue`; 0 while the worker has not declared it yet."""
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        try:
            return connection.channel().queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.1)


def send_until_confirmed(bus: Bus, exchange: str, claim: str) -> None:
    """The publisher's side of at-least-once: resend (same id) until the broker confirms."""
    body = json.dumps({"claim_id": claim, "amount": "100.00"}).encode()
    for _ in range(100):
        try:
            bus.send(exchange, "expense", body, message_id=claim)
            return
        except NotConfirmed:
            time.sleep(0.2)
    raise AssertionError(f"could not publish {claim}")


def outputs(bus: Bus, queue: str) -> Counter:
    return Counter(json.loads(d.body)["claim_id"] for d in bus.received[queue])


@pytest.fixture
def worker(tmp_path, rabbit_url):
    with open(tmp_path / "worker.log", "wb") as log:
        worker = Worker(tmp_path, rabbit_url, log)
        yield worker
        worker.stop()
    if os.environ.get("ESB_SHOW_WORKER_LOG"):
        print((tmp_path / "worker.log").read_text())


def project(tmp_path, uid, ledger, concurrency):
    write_project(tmp_path, {"adapters/ledger.yaml": LEDGER.format(url=ledger.url),
                             "routes/f.yaml": ROUTE.format(uid=uid, concurrency=concurrency),
                             "config/esb.yaml": "store: {kind: sqlite, path: var/idem.sqlite3}\n"})


def test_kill_9_mid_message_loses_nothing_and_posts_each_voucher_once(tmp_path, uid, ledger, rabbit_bus, worker):
    project(tmp_path, uid, ledger, concurrency=1)
    rabbit_bus.listen(f"seen-{uid}", f"out-{uid}")
    worker.start(f"f-{uid}")
    claims = [f"C{uid}-{i:03d}" for i in range(30)]
    for claim in claims[:10]:
        send_until_confirmed(rabbit_bus, f"in-{uid}", claim)
    rabbit_bus.wait_for(f"seen-{uid}", 10)
    ledger.delay = 3.0  # the next voucher post is applied, then answered slowly: kill during it
    before = len(ledger.server.requests)
    for claim in claims[10:]:
        send_until_confirmed(rabbit_bus, f"in-{uid}", claim)
    wait_until(lambda: len(ledger.server.requests) > before, 15, "no voucher post reached the ledger")
    time.sleep(0.5)
    worker.kill()
    ledger.delay = 0.0
    worker.start(f"f-{uid}")
    rabbit_bus.wait_for(f"seen-{uid}", 30, timeout=60)
    rabbit_bus.settle(1.0)
    seen = outputs(rabbit_bus, f"seen-{uid}")
    assert set(seen) == set(claims), f"lost: {set(claims) - set(seen)}; unexpected: {set(seen) - set(claims)}"
    assert all(n == 1 for n in seen.values()), f"duplicated outputs: {[c for c, n in seen.items() if n > 1]}"
    posted = Counter(json.loads(body)["claim_id"] for _, _, body in ledger.effects.values())
    assert posted == Counter(claims), "the ledger did not apply exactly one effect per claim"
    repeated = Counter(r.headers["Idempotency-Key"] for r in ledger.server.requests)
    assert max(repeated.values()) == 2, "the in-flight post was not repeated with the same Idempotency-Key"


def test_closing_all_connections_three_times_under_load_loses_nothing(tmp_path, uid, ledger, rabbit_bus, worker):
    project(tmp_path, uid, ledger, concurrency=8)
    rabbit_bus.listen(f"seen-{uid}", f"out-{uid}")
    worker.start(f"f-{uid}")
    claims = [f"L{uid}-{i:04d}" for i in range(600)]
    closed = 0
    for i, claim in enumerate(claims):
        send_until_confirmed(rabbit_bus, f"in-{uid}", claim)
        if i in (150, 300, 450):
            subprocess.run(["rabbitmqctl", "close_all_connections", "esb fault test"], check=True,
                           capture_output=True, timeout=60)
            closed += 1
    assert closed == 3
    wait_until(lambda: set(outputs(rabbit_bus, f"seen-{uid}")) >= set(claims), 120,
               "not every claim came out after the connection faults")
    rabbit_bus.settle(2.0)
    seen = outputs(rabbit_bus, f"seen-{uid}")
    assert set(seen) == set(claims), f"unexpected: {set(seen) - set(claims)}"
    posted = Counter(json.loads(body)["claim_id"] for _, _, body in ledger.effects.values())
    assert posted == Counter(claims), "the ledger did not apply exactly one effect per claim"
    print(f"duplicated outputs (allowed, at-least-once): {sum(n - 1 for n in seen.values())}")
