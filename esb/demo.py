"""`esb demo`: the sample finance routes end to end on the embedded broker.

Stand-in servers start in this process (a ledger that recognises repeats by Idempotency-Key,
the OA voucher archive over SOAP, the bank's SFTP server when sshd is installed); the routes in
routes/ run unchanged against them, and each scenario says what should happen and checks it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from esb.devledger import StandInLedger
from esb.idempotency import SqliteStore
from esb.project import load_project
from esb.runtime import names
from esb.runtime.broker import Binding, Outgoing, QueueSpec, Topology
from esb.runtime.kombu_broker import KombuBroker
from esb.runtime.runtime import Runtime
from esb.transform import jsoncodec

TIMEOUT = 20.0
EXPENSE = ("oa.events", "expense.approved")
STATEMENT = ("bank.events", "statement.camt053")
TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"


def expense(claim_id: str, lines: list[tuple[str, str, str]]) -> dict:
    items = [{"account": a, "description": d, "amount": Decimal(m)} for a, d, m in lines]
    return {"claim_id": claim_id, "employee": {"id": "E01024", "name": "张伟"}, "department": "华东销售部",
            "approved_at": "2026-11-20T10:12:00+08:00", "currency": "CNY", "lines": items,
            "total": sum((i["amount"] for i in items), Decimal("0"))}


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    send: tuple[str, str]
    body: dict | bytes
    expect: str                      # "done", "dead", "review"
    ledger_failures: int = 0         # transient 503s the ledger answers first
    content_type: str = "application/json"

    @property
    def message_id(self) -> str:
        return "demo-" + self.name.split(":")[0].strip().replace(" ", "-")


def scenarios() -> list[Scenario]:
    travel = [("6602.03", "差旅费-上海至北京高铁往返", "1106.00"), ("6602.03", "差旅费-北京住宿3晚", "1680.00")]
    found = [
        Scenario("1: an approved claim becomes a voucher, archived in OA", EXPENSE,
                 expense("EXP-DEMO-0001", travel), "done"),
        Scenario("2: the ledger answers 503 three times, then the retry succeeds", EXPENSE,
                 expense("EXP-DEMO-0002", travel), "done", ledger_failures=3),
        Scenario("3: the ledger refuses account 9999 (422): dead-lettered with the reason", EXPENSE,
                 expense("EXP-DEMO-0003", [("9999", "unknown account", "88.00")]), "dead"),
        Scenario("4: a claim above 50000 also goes to finance review", EXPENSE,
                 expense("EXP-DEMO-0004", [("6601.08", "经销商大会会务费", "56800.00")]), "review"),
        Scenario("5: OA publishes claim 1 again: skipped, never posted twice", EXPENSE,
                 expense("EXP-DEMO-0001", travel), "skipped"),
    ]
    camt = TESTDATA / "iso20022" / "camt053"
    if camt.is_dir():
        found += [
            Scenario("6: a camt.053 statement reconciles and its entries are posted", STATEMENT,
                     (camt / "FI_camt_053_sample.xml.xml").read_bytes(), "done", content_type="application/xml"),
            Scenario("7: a statement that does not reconcile is dead-lettered (business)", STATEMENT,
                     (camt / "camt053.v2.five.decimals.xml").read_bytes(), "dead", content_type="application/xml"),
        ]
    return found


@dataclasses.dataclass
class Outcome:
    scenario: Scenario
    result: str = "pending"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == self.scenario.expect


class Observer:
    """Watches the queues a person would look at: dead letters and finance review."""

    def __init__(self, broker: KombuBroker, route_names: list[str]):
        self.broker = broker
        self.seen: dict[str, list] = defaultdict(list)
        self.changed = threading.Condition()
        queues = [names.dead_letter_queue(r) for r in route_names] + ["demo.finance-review"]
        broker.declare(Topology((("finance.review", "topic"),), tuple(QueueSpec(q) for q in queues),
                                (Binding("demo.finance-review", "finance.review", "#"),)))
        for queue in queues:
            broker.consume(queue, 100, lambda d, q=queue: self._seen(q, d))

    def _seen(self, queue: str, delivery) -> None:
        with self.changed:
            self.seen[queue].append(delivery)
            self.changed.notify_all()
        self.broker.ack(delivery)

    def find(self, queue: str, message_id: str):
        return next((d for d in self.seen[queue] if d.message_id == message_id), None)


def run_demo(root: Path, say: Callable[[str], None] = print) -> list[Outcome]:
    """Run every scenario; return what happened to each."""
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(StandInLedger())
        env = {**os.environ, "LEDGER_URL": ledger.url, "ESB_BROKER_URL": "memory://"}
        env.update(_start_oa(stack))
        project = load_project(root, env)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="esb-demo-")))
        broker = KombuBroker("memory://")
        runtime = Runtime(project, broker, store=SqliteStore(str(work / "idempotency.sqlite3")))
        runtime.start()
        stack.callback(runtime.stop, 10)
        observer = Observer(broker, list(project.routes))
        say(f"esb demo: {len(project.routes)} routes running on the embedded broker; "
            f"stand-in ledger at {ledger.url}")
        return [_play(s, runtime, observer, ledger, say) for s in scenarios()]


def _start_oa(stack: contextlib.ExitStack) -> dict:
    from esb.devservers_soap import VoucherArchiveServer
    server = stack.enter_context(VoucherArchiveServer())
    return {"OA_SOAP_URL": server.url}


def _play(scenario: Scenario, runtime: Runtime, observer: Observer, ledger: StandInLedger, say) -> Outcome:
    outcome = Outcome(scenario)
    broker = runtime.broker
    if scenario.ledger_failures:
        ledger.fail_next("/vouchers", 503, times=scenario.ledger_failures)
    effects_before = len(ledger.effects)
    body = scenario.body if isinstance(scenario.body, bytes) else jsoncodec.dumps(scenario.body).encode()
    exchange, key = scenario.send
    broker.publish(exchange, key, Outgoing(body, scenario.content_type, {}, scenario.message_id)).result(5)
    runner = next(r for r in runtime.runners if r.route.source.exchange == exchange)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and outcome.result == "pending":
        time.sleep(0.05)
        _judge(outcome, observer, ledger, runner, effects_before)
    mark = "ok  " if outcome.ok else "FAIL"
    say(f"  {mark} {scenario.name}\n         -> {outcome.result}: {outcome.detail}")
    return outcome


def _judge(outcome: Outcome, observer: Observer, ledger: StandInLedger, runner, effects_before: int) -> None:
    s, route = outcome.scenario, runner.route
    letter = observer.find(names.dead_letter_queue(route.name), s.message_id)
    if letter is not None:
        h = letter.headers
        outcome.result = "dead"
        outcome.detail = (f"dead letter in {names.dead_letter_queue(route.name)}: step {h.get(names.DLQ_STEP)}, "
                          f"{h.get(names.DLQ_ERROR_CLASS)}: {h.get(names.DLQ_REASON)}")
        return
    if not runner.idle():
        return
    tries = len([r for r in ledger.server.requests if r.headers.get("X-Message-Id") == s.message_id])
    posts = len(ledger.effects) - effects_before
    if observer.find("demo.finance-review", s.message_id) is not None:
        outcome.result, outcome.detail = "review", f"posted once after {tries} request(s), then sent to finance.review"
    elif posts == 0 and tries == 0:
        outcome.result, outcome.detail = "skipped", "a duplicate: acked without a second posting"
    elif posts > 0:
        outcome.result, outcome.detail = "done", f"{posts} posting(s) in the ledger after {tries} request(s)"
