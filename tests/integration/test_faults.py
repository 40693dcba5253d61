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
from pathlib import Path

import pika
import pika.exceptions
import pytest
from integration_helpers import Bus, consumers, queue_counts, wait_until, write_project

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

    def start(self, queue: str, *options: str) -> None:
        self.command = [sys.executable, "-m", "esb.cli.main", "--root", str(self.root), "--log-level", "info", "run",
                        "--workers", "1", "--broker", self.url, *options]
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: consumers(self.url, queue) >= 1, 30, "the worker did not start consuming")

    def log_lines(self) -> list[str]:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace").splitlines()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


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


def test_messages_in_flight_when_connections_drop_are_not_left_busy_and_the_route_drains_promptly(
        tmp_path, uid, ledger, rabbit_bus, worker):
    project(tmp_path, uid, ledger, concurrency=8)
    rabbit_bus.listen(f"seen-{uid}", f"out-{uid}")
    worker.start(f"f-{uid}")
    ledger.delay = 0.2  # eight vouchers in flight at any time
    claims = [f"B{uid}-{i:03d}" for i in range(200)]
    for claim in claims:
        send_until_confirmed(rabbit_bus, f"in-{uid}", claim)
    for _ in range(3):
        time.sleep(1.0)
        subprocess.run(["rabbitmqctl", "close_all_connections", "esb fault test"], check=True,
                       capture_output=True, timeout=60)
    last_fault = time.monotonic()
    wait_until(lambda: set(outputs(rabbit_bus, f"seen-{uid}")) >= set(claims), 90,
               "not every claim came out after the connection faults")
    drained_in = time.monotonic() - last_fault
    busy = Counter(line.split("message_id=")[1].split()[0] for line in worker.log_lines()
                   if "retry_scheduled" in line and "reason=busy" in line)
    print(f"busy re-queues: {sum(busy.values())} for {len(busy)} messages; drained {drained_in:.1f} s after the fault")
    # Given-back deliveries released their claims: no copy waited out a 120 s lease, bouncing
    # through a retry tier (before: hundreds of re-queues, over two minutes to drain).
    assert sum(busy.values()) <= 24 and max(busy.values(), default=0) <= 3
    assert drained_in < 45
    posted = Counter(json.loads(body)["claim_id"] for _, _, body in ledger.effects.values())
    assert posted == Counter(claims), "the ledger did not apply exactly one effect per claim"


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
    last_fault = time.monotonic()
    wait_until(lambda: set(outputs(rabbit_bus, f"seen-{uid}")) >= set(claims), 120,
               "not every claim came out after the connection faults")
    drained_in = time.monotonic() - last_fault
    rabbit_bus.settle(2.0)
    seen = outputs(rabbit_bus, f"seen-{uid}")
    assert set(seen) == set(claims), f"unexpected: {set(seen) - set(claims)}"
    posted = Counter(json.loads(body)["claim_id"] for _, _, body in ledger.effects.values())
    assert posted == Counter(claims), "the ledger did not apply exactly one effect per claim"
    print(f"duplicated outputs (allowed, at-least-once): {sum(n - 1 for n in seen.values())}")
    # A delivery given back releases its claim: its redelivered copy is not `busy` for a lease's
    # length, bouncing through a retry tier (before: ~6 re-queues per message, 126 s to drain).
    busy = Counter(line.split("message_id=")[1].split()[0] for line in worker.log_lines()
                   if "retry_scheduled" in line and "reason=busy" in line)
    print(f"busy re-queues: {sum(busy.values())} for {len(busy)} messages; drained {drained_in:.1f} s after the fault")
    assert sum(busy.values()) <= len(claims) // 10 and max(busy.values(), default=0) <= 3
    assert drained_in < 60


POISON = """\
import os
import signal
import time


def run(body, headers):
    if body.get("poison"):
        os.kill(os.getpid(), signal.SIGKILL)  # a message that kills whatever worker takes it
    if body.get("hang"):
        time.sleep(600)  # a step that never comes back
    return body
"""

POISON_ROUTE = """\
name: p-{uid}
source: {{exchange: in-{uid}, binding_key: "#", quorum: {quorum}}}
steps:
  - label: inspect
    function: "transformers/functions/poison.py:run"
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""


def poison_project(tmp_path, uid, quorum: bool = False) -> None:
    write_project(tmp_path, {"transformers/functions/poison.py": POISON,
                             "routes/p.yaml": POISON_ROUTE.format(uid=uid, quorum=str(quorum).lower()),
                             "config/esb.yaml": "store: {kind: sqlite, path: var/idem.sqlite3}\n"})


def dead_letter_count(url: str, queue: str) -> int:
    return queue_counts(url, queue)[0]


@pytest.mark.parametrize("quorum", [False, True], ids=["classic", "quorum"])
def test_a_message_that_kills_every_worker_is_dead_lettered_after_three_deliveries(
        tmp_path, uid, rabbit_url, rabbit_bus, worker, quorum):
    poison_project(tmp_path, uid, quorum)
    rabbit_bus.listen(f"seen-{uid}", f"out-{uid}")
    worker.start(f"p-{uid}")
    rabbit_bus.send(f"in-{uid}", "x", b'{"poison": true}', message_id=f"P-{uid}")
    starts = 1
    while dead_letter_count(rabbit_url, f"p-{uid}.dlq") == 0:
        assert starts <= 4, "the poison message was still being delivered after 4 worker starts"
        worker.process.wait(30)  # killed by the poison
        worker.process = subprocess.Popen(worker.command, stdout=worker.log, stderr=subprocess.STDOUT)
        starts += 1
        wait_until(lambda: worker.process.poll() is not None or dead_letter_count(rabbit_url, f"p-{uid}.dlq"),
                   30, "the restarted worker neither died nor dead-lettered the poison message")
    assert starts == 4  # three deliveries killed a worker; the fourth was dead-lettered unrun
    rabbit_bus.send(f"in-{uid}", "x", b'{"n": 1}')
    [out] = rabbit_bus.wait_for(f"seen-{uid}", 1)  # the worker keeps going
    assert out.body == b'{"n":1}'
    with pika.BlockingConnection(pika.URLParameters(rabbit_url)) as connection:
        _, properties, body = connection.channel().basic_get(f"p-{uid}.dlq", auto_ack=True)
    assert properties.message_id == f"P-{uid}" and body == b'{"poison": true}'
    assert properties.headers["x-esb-error-class"] == "delivery_limit"
    assert "delivered 4 times without being settled" in properties.headers["x-esb-reason"]


def test_sigterm_drains_within_its_timeout_while_a_step_hangs_and_loses_nothing(
        tmp_path, uid, rabbit_url, rabbit_bus, worker):
    poison_project(tmp_path, uid)
    worker.start(f"p-{uid}", "--drain-timeout", "2")
    rabbit_bus.send(f"in-{uid}", "x", b'{"hang": true}', message_id=f"H-{uid}")
    time.sleep(1.0)  # the step is hanging now
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(30)
    assert time.monotonic() - started < 8, "the worker did not exit within its drain timeout"
    wait_until(lambda: dead_letter_count(rabbit_url, f"p-{uid}") == 1, 10,
               "the unfinished message did not go back to its queue")
