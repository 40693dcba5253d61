"""`esb demo`: the sample finance routes end to end on the embedded broker.

Stand-in servers start in this process: a ledger that recognises repeats by Idempotency-Key,
the OA voucher archive over SOAP, and the bank's SFTP server (OpenSSH's sshd, when installed).
The routes in routes/ run unchanged against them; each scenario says what should happen, makes
it happen the way the real system would (OA publishes, the bank drops a file), and checks it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from esb.loading.project import load_project
from esb.runtime import names
from esb.runtime.broker import Binding, Outgoing, QueueSpec, Topology
from esb.runtime.connect import make_broker
from esb.runtime.runtime import Runtime
from esb.store import SqliteStore
from esb.testing.ledger import StandInLedger
from esb.transform import jsoncodec

TIMEOUT = 20.0
TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
WATCHED = {"demo.finance-review": ("finance.review", "#"),
           "demo.erp-submitted": ("erp.events", "payment.order.submitted")}


def expense(claim_id: str, lines: list[tuple[str, str, str]]) -> dict:
    items = [{"account": a, "description": d, "amount": Decimal(m)} for a, d, m in lines]
    return {"claim_id": claim_id, "employee": {"id": "E01024", "name": "张伟"}, "department": "华东销售部",
            "approved_at": "2026-11-20T10:12:00+08:00", "currency": "CNY", "lines": items,
            "total": sum((i["amount"] for i in items), Decimal("0"))}


PAYMENT_ORDER = {
    "order_id": "PO-DEMO-0001", "created_at": "2026-11-20T09:15:00+01:00", "execution_date": "2026-11-23",
    "debtor": {"name": "Huaxin Trading Europe GmbH", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"},
    "payments": [{"end_to_end_id": "INV-2026-0518", "amount": Decimal("1250.00"), "currency": "EUR",
                  "creditor": {"name": "Logistique Rhone SARL", "iban": "FR1420041010050500013M02606",
                               "bic": "PSSTFRPPLYO"}, "remittance": "Facture 2026-0518"}]}


# The bank's answer to the payment file the demo uploads: one transaction rejected, account closed.
PAIN002_REJECTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>COBADEFF-STS-20261123-0001</MsgId><CreDtTm>2026-11-23T07:30:00+01:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts><OrgnlMsgId>ESB-PO-DEMO-0001</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.03</OrgnlMsgNmId>
      <GrpSts>RJCT</GrpSts></OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts><OrgnlPmtInfId>PO-DEMO-0001</OrgnlPmtInfId><PmtInfSts>RJCT</PmtInfSts>
      <TxInfAndSts><OrgnlEndToEndId>INV-2026-0518</OrgnlEndToEndId><TxSts>RJCT</TxSts>
        <StsRsnInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>Account closed</AddtlInf></StsRsnInf></TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>
"""


@dataclasses.dataclass
class Demo:
    """What the scenarios act on and look at."""

    runtime: Runtime
    ledger: StandInLedger
    archive: object
    sftp: object | None
    seen: dict = dataclasses.field(default_factory=lambda: defaultdict(list))

    def publish(self, exchange: str, key: str, body: dict, message_id: str) -> str:
        data = jsoncodec.dumps(body).encode()
        self.runtime.broker.publish(exchange, key, Outgoing(data, "application/json", {}, message_id)).result(5)
        return message_id

    def drop_file(self, remote: str, data: bytes) -> str:
        """The bank puts a file in its SFTP folder; the poller publishes it, id = its SHA-256."""
        path = Path(self.sftp.root) / remote.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def letter(self, route: str, message_id: str):
        return next((d for d in self.seen[names.dead_letter_queue(route)] if d.message_id == message_id), None)

    def watched(self, queue: str, message_id: str):
        return next((d for d in self.seen[queue] if d.message_id == message_id), None)

    def done(self, route: str, key: str) -> bool:
        record = self.runtime.store.get(route, key)
        return record is not None and record.state == "done"

    def calls(self, message_id: str) -> int:
        return len([r for r in self.ledger.server.requests if r.headers.get("X-Message-Id") == message_id])


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    route: str
    expect: str                                   # done, dead, skipped, review, uploaded
    act: Callable[[Demo], str]                    # makes it happen; returns the message id
    key: Callable[[str], str] = lambda message_id: message_id   # the idempotency key to look up
    needs_sftp: bool = False


def scenarios() -> list[Scenario]:
    travel = [("6602.03", "差旅费-上海至北京高铁往返", "1106.00"), ("6602.03", "差旅费-北京住宿3晚", "1680.00")]
    oa = "oa-expense-to-voucher"

    def claim(claim_id, lines, before=None):
        def act(demo: Demo) -> str:
            if before:
                before(demo)
            return demo.publish("oa.events", "expense.approved", expense(claim_id, lines), f"oa-{claim_id}")
        return act

    found = [
        Scenario("an approved claim becomes a voucher, archived in OA", oa, "done",
                 claim("EXP-DEMO-0001", travel), key=lambda _: "EXP-DEMO-0001"),
        Scenario("the ledger answers 503 three times; the retry posts it once", oa, "done",
                 claim("EXP-DEMO-0002", travel, lambda d: d.ledger.fail_next("/vouchers", 503, times=3)),
                 key=lambda _: "EXP-DEMO-0002"),
        Scenario("the ledger refuses account 9999 (422): dead-lettered with the reason", oa, "dead",
                 claim("EXP-DEMO-0003", [("9999", "unknown account", "88.00")])),
        Scenario("the OA archive faults (Client): the voucher is cancelled, then dead-lettered", oa, "dead",
                 claim("EXP-DEMO-0004", travel, lambda d: d.archive.fail_next("Client", "claim is closed"))),
        Scenario("a claim above 50000 also goes to finance review", oa, "review",
                 claim("EXP-DEMO-0005", [("6601.08", "经销商大会会务费", "56800.00")]),
                 key=lambda _: "EXP-DEMO-0005"),
        Scenario("OA publishes the first claim again: skipped, never posted twice", oa, "skipped",
                 lambda d: d.publish("oa.events", "expense.approved", expense("EXP-DEMO-0001", travel),
                                     "oa-EXP-DEMO-0001-again"), key=lambda _: "EXP-DEMO-0001"),
        Scenario("an ERP payment order becomes a pain.001 file in the bank's SFTP outbox",
                 "payment-order-to-pain001", "uploaded",
                 lambda d: d.publish("erp.events", "payment.order.approved", PAYMENT_ORDER, "erp-PO-DEMO-0001"),
                 key=lambda _: "PO-DEMO-0001", needs_sftp=True),
    ]
    found.append(Scenario("the bank's pain.002 rejects it (AC04): the order is updated in the ledger",
                          "pain002-to-payment-status", "done",
                          lambda d: d.drop_file("/status/pain002-0001.xml", PAIN002_REJECTED), needs_sftp=True))
    mt940 = TESTDATA / "mt940" / "sberbank" / "171011_01234945.sta"
    if mt940.is_file():
        found.append(Scenario("the bank drops an MT940 statement on SFTP: reconciled, entries posted",
                              "mt940-to-ledger", "done",
                              lambda d: d.drop_file("/inbox/171011_01234945.sta", mt940.read_bytes()),
                              needs_sftp=True))
    camt = TESTDATA / "iso20022" / "camt053"
    if camt.is_dir():
        found += [
            Scenario("the bank drops a camt.053 statement on SFTP: reconciled, entries posted", "camt053-to-ledger",
                     "done", lambda d: d.drop_file("/inbox/statement-0972009.xml",
                                                   (camt / "FI_camt_053_sample.xml.xml").read_bytes()),
                     needs_sftp=True),
            Scenario("a statement that does not reconcile is dead-lettered (business)", "camt053-to-ledger",
                     "dead", lambda d: d.drop_file("/inbox/statement-five-decimals.xml",
                                                   (camt / "camt053.v2.five.decimals.xml").read_bytes()),
                     needs_sftp=True),
        ]
    return found


def run_demo(root: Path, say: Callable[[str], None] = print, broker_url: str = "memory://") -> list[Outcome]:
    """Run every scenario (on the embedded broker unless told otherwise); return what happened to each."""
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="esb-demo-")))
        ledger = stack.enter_context(StandInLedger())
        archive, env = _start_oa(stack)
        sftp, sftp_env = _start_bank_sftp(stack, work, say)
        env.update(sftp_env, LEDGER_URL=ledger.url, ESB_BROKER_URL=broker_url)
        project = load_project(root, {**os.environ, **env})
        broker = make_broker(broker_url)
        runtime = Runtime(project, broker, store=SqliteStore(str(work / "idempotency.sqlite3")),
                          pollers=sftp is not None)
        demo = Demo(runtime, ledger, archive, sftp)
        watcher = _watch(list(project.routes), demo, broker_url)
        stack.callback(watcher.stop)
        runtime.start()
        stack.callback(runtime.stop, 10)
        where = "the embedded broker" if broker_url == "memory://" else "RabbitMQ"
        say(f"esb demo: {len(project.routes)} routes on {where}; stand-ins: ledger {ledger.url}, "
            f"OA archive {archive.url}" + (f", bank SFTP {sftp.host}:{sftp.port}" if sftp else ""))
        return [_play(s, demo, say) for s in scenarios() if sftp is not None or not s.needs_sftp]


def _start_oa(stack: contextlib.ExitStack):
    from esb.testing.soap import VoucherArchiveServer
    server = stack.enter_context(VoucherArchiveServer(users={"esb": "demo-password"}))
    return server, {"OA_SOAP_URL": server.url, "OA_SOAP_USER": "esb", "OA_SOAP_PASSWORD": "demo-password"}


def _start_bank_sftp(stack: contextlib.ExitStack, work: Path, say):
    from esb.testing.sftp import SftpServer, SshdMissing
    try:
        server = stack.enter_context(SftpServer())
    except SshdMissing as exc:
        say(f"(bank SFTP scenarios skipped: {exc})")
        return None, {}
    for folder in ("inbox", "outbox", "status"):
        (Path(server.root) / folder).mkdir(exist_ok=True)
    return server, {"BANK_SFTP_HOST": server.host, "BANK_SFTP_PORT": str(server.port),
                    "BANK_SFTP_USER": server.username, "BANK_SFTP_KEY_FILE": str(server.client_key_path),
                    "BANK_SFTP_KNOWN_HOSTS": str(server.known_hosts_path), "BANK_SFTP_POLL_EVERY": "300ms"}


def _watch(routes: list[str], demo: Demo, broker_url: str):
    """Queues a person would look at: each route's dead letters, finance review, the ERP's inbox."""
    queues = [names.dead_letter_queue(r) for r in routes] + list(WATCHED)
    exchanges = tuple(dict.fromkeys((exchange, "topic") for exchange, _ in WATCHED.values()))
    broker = make_broker(broker_url)
    broker.start()
    broker.declare(Topology(exchanges, tuple(QueueSpec(q) for q in queues),
                            tuple(Binding(q, e, k) for q, (e, k) in WATCHED.items())))
    lock = threading.Lock()

    def seen(queue, delivery):
        with lock:
            demo.seen[queue].append(delivery)
        broker.ack(delivery)
    for queue in queues:
        broker.consume(queue, 100, lambda d, q=queue: seen(q, d))
    return broker


@dataclasses.dataclass
class Outcome:
    scenario: Scenario
    result: str = "pending"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == self.scenario.expect


def _play(scenario: Scenario, demo: Demo, say) -> Outcome:
    outcome = Outcome(scenario)
    effects = len(demo.ledger.effects)
    message_id = scenario.act(demo)
    runner = next(r for r in demo.runtime.runners if r.route.name == scenario.route)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and outcome.result == "pending":
        time.sleep(0.05)
        _judge(outcome, demo, runner, message_id, effects)
    say(f"  {'ok  ' if outcome.ok else 'FAIL'} {scenario.name}\n         -> {outcome.result}: {outcome.detail}")
    return outcome


def _judge(outcome: Outcome, demo: Demo, runner, message_id: str, effects_before: int) -> None:
    s, route = outcome.scenario, runner.route.name
    letter = demo.letter(route, message_id)
    if letter is not None:
        h = letter.headers
        outcome.result = "dead"
        outcome.detail = (f"in {names.dead_letter_queue(route)}: step {h.get(names.DLQ_STEP)}, "
                          f"{h.get(names.DLQ_ERROR_CLASS)}: {h.get(names.DLQ_REASON)}; "
                          f"compensation: {h.get(names.DLQ_COMPENSATION)}")
        return
    if not runner.idle() or not demo.done(route, s.key(message_id)):
        return
    posts, tries = len(demo.ledger.effects) - effects_before, demo.calls(message_id)
    if demo.watched("demo.finance-review", message_id) is not None:
        outcome.result, outcome.detail = "review", f"posted once after {tries} request(s), sent to finance.review"
    elif s.expect == "uploaded":
        files = sorted(p.name for p in (Path(demo.sftp.root) / "outbox").glob("*.xml"))
        told = demo.watched("demo.erp-submitted", message_id) is not None
        outcome.result = "uploaded" if files and told else "incomplete"
        outcome.detail = f"outbox holds {files}; ERP told it was submitted: {told}"
    elif posts == 0 and tries == 0:
        outcome.result, outcome.detail = "skipped", "a duplicate: acked without a second posting"
    else:
        applied = ", ".join(f"{m} {p}" for m, p, _ in list(demo.ledger.effects.values())[effects_before:])
        outcome.result, outcome.detail = "done", f"the ledger applied {applied} after {tries} request(s)"
