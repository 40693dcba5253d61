"""Running the demo: the stand-in servers, the runtime, and what happened to each scenario's message."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

from esb.demo import samples
from esb.demo.scenarios import Scenario, scenarios
from esb.inbound import auth as inbound_auth
from esb.inbound.http import serve_webhooks
from esb.loading.envfile import DEMO_ENV_FILE, with_env_file
from esb.loading.project import load_project
from esb.runtime import dlq, names, schedule
from esb.runtime.broker import Binding, Outgoing, QueueSpec, Topology, confirmed_publish
from esb.runtime.connect import make_broker
from esb.runtime.keys import store_key
from esb.runtime.runtime import Runtime
from esb.store import SqliteStore
from esb.store.marks import MemoryMarks
from esb.testing.http import RecordedRequest, StubHttpServer, StubResponse
from esb.testing.ledger import StandInLedger
from esb.transform import jsoncodec

TIMEOUT = 20.0
PENDING, NOT_RUN = "pending", "not run"   # Outcome.result besides a scenario's expectations
WATCHED = {"demo.finance-review": ("finance.review", "#"),
           "demo.erp-submitted": ("erp.events", "payment.order.submitted"),
           "demo.bank-statements": ("bank.events", "statement.rest.json")}


@dataclasses.dataclass
class Demo:
    """What the scenarios act on and look at."""

    runtime: Runtime
    ledger: StandInLedger
    archive: object
    sftp: object | None
    bank_api: StubHttpServer
    webhooks: object                               # esb.inbound.http.WebhookServer
    seen: dict = dataclasses.field(default_factory=lambda: defaultdict(list))
    answers: dict = dataclasses.field(default_factory=dict)   # message id -> HTTP status its sender got

    def publish(self, exchange: str, key: str, body: dict, message_id: str) -> str:
        data = jsoncodec.dumps(body).encode()
        self.runtime.broker.publish(exchange, key, Outgoing(data, "application/json", {}, message_id)).result(5)
        return message_id

    def post_webhook(self, route: str, body: dict, delivery: str) -> str:
        """OA POSTs a signed webhook to the route's path, as `esb run` serves it; the answer is kept."""
        http = self.runtime.project.routes[route].source.http
        data = jsoncodec.dumps(body).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", http.idempotency_header: delivery,
                   http.auth.timestamp_header: stamp,
                   http.auth.header: inbound_auth.sign(http.auth.secret, stamp, data)}
        host, port = self.webhooks.address
        request = urllib.request.Request(f"http://{host}:{port}{http.path}", data, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                self.answers[delivery] = answer.status
        except urllib.error.HTTPError as exc:
            self.answers[delivery] = exc.code
        return delivery

    def fire_schedule(self, route: str, fire_time: str) -> str:
        """The route's scheduler at `fire_time` (its mark a minute before): it emits that fire time's trigger."""
        at = datetime.fromisoformat(fire_time)
        marks = MemoryMarks()
        scheduler = schedule.Scheduler(self.runtime.project.routes[route], confirmed_publish(self.runtime.broker),
                                       marks=marks, clock=lambda: at.timestamp() + 0.5)
        marks.set(scheduler.name, datetime.fromtimestamp(at.timestamp() - 60, at.tzinfo).isoformat())
        fired = scheduler.tick()
        return schedule.message_id(route, fired[0]) if fired else f"schedule:{route}:not fired"

    def drop_file(self, remote: str, data: bytes) -> str:
        """The bank puts a file in its SFTP folder; the poller publishes it, id = its SHA-256."""
        path = Path(self.sftp.root) / remote.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def replay(self, route: str, message_id: str) -> str:
        """`esb dlq replay` of one dead letter the demo holds, after the fix: back to its route."""
        delivery = self.letter(route, message_id)
        self.seen[names.dead_letter_queue(route)].remove(delivery)
        letter = dlq.DeadLetter.from_delivery(delivery, self.runtime.seal, route)
        model = self.runtime.project.routes[route]
        again = dlq.replayed(letter, None, model, self.runtime.seal)
        self.runtime.broker.publish("", model.source.queue, again).result(5)
        return message_id

    def letter(self, route: str, message_id: str):
        return next((d for d in self.seen[names.dead_letter_queue(route)] if d.message_id == message_id), None)

    def watched(self, queue: str, message_id: str):
        return next((d for d in self.seen[queue] if d.message_id == message_id), None)

    def done(self, route: str, key: str) -> bool:
        record = self.runtime.store.get(route, store_key(key, "key"))
        return record is not None and record.state == "done"

    def calls(self, message_id: str) -> int:
        return len([r for r in self.ledger.server.requests if r.headers.get("X-Message-Id") == message_id])

    def bank_calls(self, message_id: str) -> tuple[str, ...]:
        return tuple(f"{r.method} {r.target}" for r in self.bank_api.requests
                     if unquote(r.headers.get("X-Message-Id", "")) == message_id)


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """The headers a person reads on a dead letter."""

    queue: str
    step: str | None
    error_class: str | None
    reason: str | None
    compensation: str | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to one scenario's message, as the demo saw it."""

    scenario: Scenario
    result: str                                # done, dead, skipped, review, uploaded, incomplete, pending, not run
    detail: str = ""
    dead_letter: DeadLetter | None = None
    effects: tuple[str, ...] = ()              # "METHOD /path" of each effect the ledger applied, in order
    ledger_requests: int = 0                   # requests that carried the message id, tries included
    entries_posted: int = 0                    # statement entries in the POST /entries the ledger applied
    outbox: tuple[str, ...] = ()               # files in the bank's SFTP outbox
    erp_told: bool = False                     # the ERP got payment.order.submitted
    http_status: int | None = None             # what a webhook's sender was answered
    bank_requests: tuple[str, ...] = ()        # "METHOD /path?query" the bank's statement API got

    @property
    def ok(self) -> bool:
        return self.result == self.scenario.expect


def run_demo(root: Path, say: Callable[[str], None] = print, broker_url: str = "memory://") -> list[Outcome]:
    """Run every scenario (on the embedded broker unless told otherwise); return what happened to each.
    Without an SFTP server (no sshd) the bank's scenarios are returned as `not run`."""
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="esb-demo-")))
        ledger = stack.enter_context(StandInLedger())
        archive, env = _start_oa(stack)
        sftp, sftp_env, no_sftp = _start_bank_sftp(stack, say)
        bank_api = stack.enter_context(_bank_statement_api())
        env.update(sftp_env, LEDGER_URL=ledger.url, BANK_API_URL=bank_api.url, ESB_BROKER_URL=broker_url,
                   ESB_HTTP_LISTEN="127.0.0.1:0")
        project = load_project(root, {**with_env_file(os.environ, root / DEMO_ENV_FILE), **env})
        broker = make_broker(broker_url)
        runtime = Runtime(project, broker, store=SqliteStore(str(work / "idempotency.sqlite3")),
                          pollers=sftp is not None)
        demo = Demo(runtime, ledger, archive, sftp, bank_api, None)
        watcher = _watch(list(project.routes), demo, broker_url)
        stack.callback(watcher.stop)
        runtime.start()
        stack.callback(runtime.stop, 10)
        demo.webhooks = serve_webhooks(project, runtime.broker)   # as `esb run` serves them
        stack.callback(demo.webhooks.stop)
        where = "the embedded broker" if broker_url == "memory://" else "RabbitMQ"
        say(f"esb demo: {len(project.routes)} routes on {where}; webhooks on "
            "http://{}:{}; stand-ins: ledger {}, OA archive {}, bank API {}".format(
                *demo.webhooks.address, ledger.url, archive.url, bank_api.url)
            + (f", bank SFTP {sftp.host}:{sftp.port}" if sftp else ""))
        return [_play(s, demo, say) if sftp is not None or not s.needs_sftp else Outcome(s, NOT_RUN, no_sftp)
                for s in scenarios()]


def _start_oa(stack: contextlib.ExitStack):
    from esb.testing.soap import VoucherArchiveServer
    server = stack.enter_context(VoucherArchiveServer(users={"esb": "demo-password"}))
    return server, {"OA_SOAP_URL": server.url, "OA_SOAP_USER": "esb", "OA_SOAP_PASSWORD": "demo-password"}


def _start_bank_sftp(stack: contextlib.ExitStack, say):
    from esb.testing.sftp import SftpServer, SshdMissing
    try:
        server = stack.enter_context(SftpServer())
    except SshdMissing as exc:
        say(f"(bank SFTP scenarios skipped: {exc})")
        return None, {}, f"no bank SFTP server: {exc}"
    for folder in ("inbox", "intraday", "outbox", "status"):
        (Path(server.root) / folder).mkdir(exist_ok=True)
    return server, {"BANK_SFTP_HOST": server.host, "BANK_SFTP_PORT": str(server.port),
                    "BANK_SFTP_USER": server.username, "BANK_SFTP_KEY_FILE": str(server.client_key_path),
                    "BANK_SFTP_KNOWN_HOSTS": str(server.known_hosts_path), "BANK_SFTP_POLL_EVERY": "300ms"}, ""


def _bank_statement_api() -> StubHttpServer:
    """The bank's statement API: GET /statements?as_of=DAY answers that account's booked entries."""
    def statement(request: RecordedRequest) -> StubResponse:
        day = request.target.partition("as_of=")[2][:10]
        return StubResponse(200, samples.rest_statement(day))
    server = StubHttpServer()
    server.route("/statements", statement)
    return server


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


def _play(scenario: Scenario, demo: Demo, say) -> Outcome:
    effects = len(demo.ledger.effects)
    message_id = scenario.act(demo)
    runner = next(r for r in demo.runtime.runners if r.route.name == scenario.route)
    deadline = time.monotonic() + TIMEOUT
    outcome = None
    while outcome is None and time.monotonic() < deadline:
        time.sleep(0.05)
        outcome = _judge(scenario, demo, runner, message_id, effects)
    outcome = outcome or Outcome(scenario, PENDING, f"no outcome within {TIMEOUT:.0f} s",
                                 effects=_effects(demo, effects), ledger_requests=demo.calls(message_id))
    say(f"  {'ok  ' if outcome.ok else 'FAIL'} {scenario.name}\n         -> {outcome.result}: {outcome.detail}")
    return outcome


def _judge(s: Scenario, demo: Demo, runner, message_id: str, effects_before: int) -> Outcome | None:
    """What became of the message, once it has settled; None while it has not."""
    route = runner.route.name
    letter = demo.letter(route, message_id)
    settled = letter is not None or (runner.idle() and demo.done(route, s.key(message_id)))
    if not settled:
        return None
    # only now: what the ledger saw is complete once the message has settled
    facts = {"effects": _effects(demo, effects_before), "ledger_requests": demo.calls(message_id),
             "entries_posted": _entries_posted(demo, effects_before)}
    if letter is not None:
        h = letter.headers
        dead = DeadLetter(names.dead_letter_queue(route), h.get(names.DLQ_STEP), h.get(names.DLQ_ERROR_CLASS),
                          h.get(names.DLQ_REASON), h.get(names.DLQ_COMPENSATION))
        return Outcome(s, "dead", f"in {dead.queue}: step {dead.step}, {dead.error_class}: {dead.reason}; "
                                  f"compensation: {dead.compensation}", dead, **facts)
    facts["http_status"] = demo.answers.get(message_id)
    posts, tries = len(facts["effects"]), facts["ledger_requests"]
    if s.expect == "pulled":
        return _pulled(s, demo, message_id, facts)
    if demo.watched("demo.finance-review", message_id) is not None:
        return Outcome(s, "review", f"posted once after {tries} request(s), sent to finance.review", **facts)
    if s.expect == "uploaded":
        files = tuple(sorted(p.name for p in (Path(demo.sftp.root) / "outbox").glob("*.xml")))
        told = demo.watched("demo.erp-submitted", message_id) is not None
        return Outcome(s, "uploaded" if files and told else "incomplete",
                       f"outbox holds {list(files)}; ERP told it was submitted: {told}",
                       outbox=files, erp_told=told, **facts)
    if posts == 0 and tries == 0:
        return Outcome(s, "skipped", "a duplicate: acked without a second posting", **facts)
    entries = f" ({facts['entries_posted']} entries)" if facts["entries_posted"] else ""
    answered = f"the webhook was answered {facts['http_status']}; " if facts["http_status"] else ""
    return Outcome(s, "done", f"{answered}the ledger applied {', '.join(facts['effects'])}{entries} "
                              f"after {tries} request(s)", **facts)


def _pulled(s: Scenario, demo: Demo, message_id: str, facts: dict) -> Outcome:
    calls = demo.bank_calls(message_id)
    published = demo.watched("demo.bank-statements", message_id)
    if published is None:
        return Outcome(s, "incomplete", f"the bank API got {list(calls)}; no statement published", bank_requests=calls,
                       **facts)
    statement = jsoncodec.loads(published.body)
    return Outcome(s, "pulled", f"{', '.join(calls)} answered; the statement of {statement['as_of']} "
                                f"({len(statement['entries'])} entries) published to bank.events "
                                "(statement.rest.json)", bank_requests=calls, **facts)


def _effects(demo: Demo, before: int) -> tuple[str, ...]:
    return tuple(f"{method} {path}" for method, path, _ in list(demo.ledger.effects.values())[before:])


def _entries_posted(demo: Demo, before: int) -> int:
    bodies = [body for method, path, body in list(demo.ledger.effects.values())[before:]
              if (method, path) == ("POST", "/entries")]
    return sum(len(stmt.get("entries") or []) for body in bodies for stmt in jsoncodec.loads(body)["statements"])
