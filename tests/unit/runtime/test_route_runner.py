"""RouteRunner on the embedded broker (memory://): forged state, the delivery limit, size, resumed retries."""

from __future__ import annotations

import json
import sqlite3
import textwrap
import threading
import time
import uuid

import pytest
from runtime_fakes import Recorder

from esb.errors import PermanentError, TransientError
from esb.loading.project import load_project
from esb.message import Message
from esb.runtime import names, retry
from esb.runtime.attempt import Attempt
from esb.runtime.broker import Binding, Delivery, Outgoing, QueueSpec, Topology
from esb.runtime.connect import make_broker
from esb.runtime.kombu_broker import KombuBroker
from esb.runtime.middleware import Hooks
from esb.runtime.runtime import project_topology
from esb.runtime.state import Seal
from esb.runtime.worker import RouteRunner
from esb.store import SqliteStore, owner_id

SEAL = Seal(b"k" * 32)
ROUTE = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
concurrency: 2
retry: {{attempts: 3, in_process: 0, backoff: {{initial: 100ms, multiplier: 1, max: 100ms}}}}
steps:
  - label: check
    to: {{adapter: ledger, operation: check, into: checked}}
  - label: post
    to: {{adapter: ledger, operation: post, into: posted}}
  - label: tell
    publish: {{exchange: out-{uid}, routing_key: done}}
"""
PURE_ROUTE = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
steps:
  - json_to_xml: {{root: Claim}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
BINARY_ROUTE = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
idempotency: {{header: x-ref}}
steps:
  - label: check
    to: {{adapter: ledger, operation: check, compensate: {{operation: undo}}}}
  - label: post
    to: {{adapter: ledger, operation: post}}
  - label: tell
    publish: {{exchange: out-{uid}, routing_key: done}}
"""
LEDGER = """\
name: ledger
kind: rest
base_url: http://127.0.0.1:9
operations:
  check: {method: POST, path: /check}
  post: {method: POST, path: /post}
  undo: {method: DELETE, path: /check}
"""
SAGA_ROUTE = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
idempotency: {{key: claim_id}}
retry: {{attempts: 1, in_process: 0}}
steps:
  - label: check
    to: {{adapter: ledger, operation: check, into: checked, compensate: {{operation: undo}}}}
  - label: post
    to: {{adapter: ledger, operation: post, into: posted}}
  - label: tell
    publish: {{exchange: out-{uid}, routing_key: done}}
"""


class Ledger:
    """The route's adapter: records each call; `fail` holds errors the next calls of an operation raise."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, list[Exception]] = {}
        self.grow = 0  # characters of padding in each answer

    def call(self, operation, message, *, idempotency_key):
        self.calls.append((operation, idempotency_key))
        if self.fail.get(operation):
            raise self.fail[operation].pop(0)
        if not message.is_json:
            return message
        return message.with_body({"ok": operation, **({"pad": "p" * self.grow} if self.grow else {})})

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]


class Collector:
    """Consumes a queue on the broker and keeps what arrives."""

    def __init__(self, broker, queue):
        self.received: list[Delivery] = []
        self.arrived = threading.Condition()

        def collect(delivery):
            with self.arrived:
                self.received.append(delivery)
                self.arrived.notify_all()
            broker.ack(delivery)
        broker.consume(queue, 10, collect)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)


class Tag:
    """What a delivery built by hand acks or rejects with (a real one carries kombu's message)."""

    def __init__(self):
        self.settled: list[str] = []
        self.done = threading.Event()

    def ack(self):
        self.settled.append("ack")
        self.done.set()

    def reject(self, requeue):
        self.settled.append(f"reject requeue={requeue}")
        self.done.set()


class Bench:
    def __init__(self, tmp_path, uid, route=ROUTE, **runner_options):
        self.uid = uid
        root = tmp_path
        for name, text in {"adapters/ledger.yaml": LEDGER, "routes/r.yaml": route.format(uid=uid)}.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(textwrap.dedent(text))
        project = load_project(root, {})
        self.route = project.routes[f"r-{uid}"]
        self.broker = make_broker("memory://")
        assert isinstance(self.broker, KombuBroker)
        self.broker.start()
        self.broker.declare(project_topology(project, [self.route.name]).merge(Topology(
            ((f"out-{uid}", "topic"),), (QueueSpec(f"seen-{uid}"),), (Binding(f"seen-{uid}", f"out-{uid}", "#"),))))
        self.ledger, self.recorder = Ledger(), Recorder()
        self.runner = RouteRunner(self.route, self.broker, lambda _name: self.ledger, seal=SEAL,
                                  hooks=Hooks([self.recorder]), owner="test", **runner_options)
        self.out = Collector(self.broker, f"seen-{uid}")
        self.dead = Collector(self.broker, names.dead_letter_queue(self.route.name))

    def send(self, body: dict | bytes, headers: dict | None = None, message_id: str = "m-1",
             content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.broker.publish(f"in-{self.uid}", "x", Outgoing(raw, content_type, headers or {}, message_id)).result(5)

    def redelivered(self, body: dict, message_id: str = "m-1") -> tuple[Delivery, Tag]:
        tag = Tag()
        return Delivery(json.dumps(body).encode(), "application/json", {}, message_id, self.route.source.queue,
                        True, tag), tag

    def close(self) -> None:
        self.runner.drain(5)
        self.broker.stop()


@pytest.fixture
def bench(tmp_path):
    made = []

    def make(route=ROUTE, **runner_options) -> Bench:
        made.append(Bench(tmp_path, uuid.uuid4().hex[:8], route, **runner_options))
        return made[-1]
    yield make
    for b in made:
        b.close()


def test_a_delivery_with_forged_attempt_and_resume_step_runs_from_its_first_step(bench):
    b = bench()
    b.runner.start()
    b.send({"claim_id": "C-1"}, {names.ATTEMPT: 2, names.RESUME_STEP: 1, "x-source": "oa"})
    out = b.out.wait_for(1)
    assert b.ledger.operations() == ["check", "post"]
    assert [d.message_id for d in out] == ["m-1"]
    assert not any(h.startswith(names.HEADER_PREFIX) for h in out[0].headers) and out[0].headers["x-source"] == "oa"
    assert b.recorder.named("on_forged_state") == [{"headers": [names.ATTEMPT, names.RESUME_STEP]}]


def test_forged_generations_do_not_change_the_keys_sent_downstream(bench):
    b = bench()
    b.runner.start()
    b.send({"claim_id": "C-1"}, {names.GENERATIONS: '{"post": 5}', names.ATTEMPT: 1})
    b.out.wait_for(1)
    assert b.ledger.calls == [("check", "m-1:check"), ("post", "m-1:post")]
    assert len(b.recorder.named("on_forged_state")) == 1


def test_a_delivery_without_esb_headers_is_not_reported_forged(bench):
    b = bench()
    b.runner.start()
    b.send({"claim_id": "C-1"}, {"x-source": "oa"})
    b.out.wait_for(1)
    assert b.recorder.named("on_forged_state") == []
    assert [f["outcome"] for f in b.recorder.named("after_message")] == ["acked"]


def test_a_redelivery_past_the_delivery_limit_is_dead_lettered_without_running_its_steps(bench):
    b = bench()  # the default limit: 3 deliveries
    b.runner.start()
    tags = []
    for _ in range(3):  # deliveries 2, 3 and 4 of the same message, as the broker hands them over
        delivery, tag = b.redelivered({"claim_id": "C-1"})
        b.runner._on_delivery(delivery)
        assert tag.done.wait(5), "the redelivery was not settled"
        tags.append(tag)
    assert b.ledger.operations() == ["check", "post", "check", "post"]  # the 4th never ran a step
    letters = b.dead.wait_for(1)
    assert len(letters) == 1
    assert letters[0].headers[names.DLQ_ERROR_CLASS] == "delivery_limit"
    assert "delivered 4 times without being settled (the limit is 3)" in letters[0].headers[names.DLQ_REASON]
    assert json.loads(letters[0].body) == {"claim_id": "C-1"}
    assert [t.settled for t in tags] == [["ack"], ["ack"], ["ack"]]
    assert b.recorder.named("on_dead_letter")[0]["error_class"] == "delivery_limit"


def test_a_message_dead_lettered_for_its_deliveries_counts_afresh_when_replayed(bench):
    b = bench(delivery_limit=2)
    b.runner.start()
    for _ in range(3):  # delivery 2 runs; delivery 3 is over the limit; the replay's redelivery runs again
        delivery, tag = b.redelivered({"claim_id": "C-1"})
        b.runner._on_delivery(delivery)
        assert tag.done.wait(5)
    assert len(b.dead.wait_for(1)) == 1
    assert b.ledger.operations() == ["check", "post", "check", "post"]
    assert len(b.out.wait_for(2)) == 2


def test_a_first_delivery_is_never_counted_against_the_limit(bench):
    b = bench(delivery_limit=1)
    b.runner.start()
    for _ in range(3):  # the same message published three times: three first deliveries
        b.send({"claim_id": "C-1"}, message_id="m-1")
    assert len(b.out.wait_for(3)) == 3 and b.dead.received == []


def test_a_body_over_max_body_is_dead_lettered_too_large_with_its_bytes_kept(bench):
    b = bench(max_body_bytes=64)
    b.runner.start()
    body = json.dumps({"claim_id": "C-1", "note": "x" * 100}).encode()
    b.send(body)
    letters = b.dead.wait_for(1)
    assert len(letters) == 1 and letters[0].body == body
    assert letters[0].headers[names.DLQ_ERROR_CLASS] == "too_large"
    assert letters[0].headers[names.DLQ_STEP] == "receive"
    assert b.ledger.calls == [] and b.out.received == []


def test_a_retried_message_resumes_at_the_failing_step_with_its_sealed_state(bench):
    b = bench()
    b.ledger.fail["post"] = [TransientError("503 Service Unavailable")]
    b.runner.start()
    b.send({"claim_id": "C-1"})
    out = b.out.wait_for(1)
    assert b.ledger.operations() == ["check", "post", "post"]  # check ran once: the retry resumed at post
    assert json.loads(out[0].body) == {"claim_id": "C-1", "checked": {"ok": "check"}, "posted": {"ok": "post"}}
    assert [f["resume_step"] for f in b.recorder.named("on_retry")] == [1]
    assert [f["outcome"] for f in b.recorder.named("after_message")] == ["retried", "acked"]
    assert b.recorder.named("on_forged_state") == []


def test_a_retried_message_whose_seal_was_broken_runs_from_its_first_step(bench):
    b = bench()
    b.ledger.fail["post"] = [TransientError("503 Service Unavailable")]
    tampered = []
    publish = b.broker.publish

    def tamper(exchange, routing_key, message):
        if ".retry." in routing_key:  # a publisher rewrites the state on its way back
            message = Outgoing(message.body, message.content_type, {**message.headers, names.RESUME_STEP: 2},
                               message.message_id)
            tampered.append(routing_key)
        return publish(exchange, routing_key, message)
    b.broker.publish = tamper
    b.runner.start()
    b.send({"claim_id": "C-1"})
    b.out.wait_for(1)
    assert tampered and b.ledger.operations() == ["check", "post", "check", "post"]
    assert len(b.recorder.named("on_forged_state")) == 1


def test_a_retried_message_that_grew_past_max_body_in_its_steps_still_resumes(bench):
    b = bench(max_body_bytes=120)
    b.ledger.fail["post"] = [TransientError("503 Service Unavailable")]
    b.ledger.grow = 200  # the ledger's answer to `check` makes the body larger than max_body
    b.runner.start()
    b.send({"claim_id": "C-1", "note": "x" * 40})  # under the limit as sent
    out = b.out.wait_for(1)
    assert b.dead.received == [] and len(out) == 1
    assert b.ledger.operations() == ["check", "post", "post"]


def test_a_pure_route_run_on_the_brokers_thread_drops_forged_state_too(bench):
    b = bench(PURE_ROUTE)
    assert b.runner.inline
    b.runner.start()
    b.send({"claim_id": "C-1"}, {names.ATTEMPT: 2, names.RESUME_STEP: 1})
    out = b.out.wait_for(1)
    assert len(out) == 1 and b"<claim_id>C-1</claim_id>" in out[0].body  # the conversion at step 0 ran
    assert b.recorder.named("on_forged_state") == [{"headers": [names.ATTEMPT, names.RESUME_STEP]}]


def test_a_pure_route_dead_letters_a_body_over_max_body_off_the_brokers_thread(bench):
    b = bench(PURE_ROUTE, max_body_bytes=32)
    b.runner.start()
    b.send({"claim_id": "C-1", "note": "x" * 40})
    letters = b.dead.wait_for(1)
    assert [d.headers[names.DLQ_ERROR_CLASS] for d in letters] == ["too_large"] and b.out.received == []


def test_a_compensated_effect_sent_again_goes_under_a_new_key(bench, tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    b = bench(SAGA_ROUTE, store=store)
    b.ledger.fail["post"] = [PermanentError("400 Bad Request")]
    b.runner.start()
    b.send({"claim_id": "C-1"})
    letters = b.dead.wait_for(1)
    assert letters[0].headers[names.DLQ_COMPENSATION] == "ok"
    b.send({"claim_id": "C-1"}, message_id="m-1")  # replayed as it came
    b.out.wait_for(1)
    b.runner.drain(5)  # the replay's `done` is written before its ack
    assert b.ledger.calls == [("check", "m-1:check"), ("post", "m-1:post"), ("undo", "m-1:check:compensate"),
                              ("check", "m-1:check:g2"), ("post", "m-1:post")]
    assert store.get(b.route.name, "s:C-1").state == "done"
    assert [f["outcome"] for f in b.recorder.named("after_message")] == ["dead_lettered", "acked"]
    store.close()


PDF = b"%PDF-1.7\n\xff\xfe\x00\x93 not UTF-8"


def test_a_binary_body_is_recorded_between_steps_and_published_once(bench, tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    b = bench(BINARY_ROUTE, store=store)
    b.runner.start()
    b.send(PDF, {"x-ref": "R-1"}, content_type="application/pdf")
    out = b.out.wait_for(1)
    b.runner.drain(5)
    assert [d.body for d in out] == [PDF] and b.ledger.operations() == ["check", "post"]
    assert store.get(b.route.name, "s:R-1").state == "done"
    store.close()


def test_a_binary_body_is_compensated_with_its_bytes_intact(bench, tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    b = bench(BINARY_ROUTE, store=store)
    b.ledger.fail["post"] = [PermanentError("422 Unprocessable Entity")]
    bodies = []
    call = b.ledger.call
    b.ledger.call = lambda operation, message, **kw: (bodies.append((operation, message.body)),
                                                      call(operation, message, **kw))[1]
    b.runner.start()
    b.send(PDF, {"x-ref": "R-1"}, content_type="application/pdf")
    letters = b.dead.wait_for(1)
    b.runner.drain(5)
    assert letters[0].headers[names.DLQ_COMPENSATION] == "ok" and letters[0].body == PDF
    assert bodies == [("check", PDF), ("post", PDF), ("undo", PDF)]
    store.close()


def in_flight(runner: RouteRunner) -> None:
    """Count a hand-made delivery in flight, as _on_delivery does, so that settling it balances."""
    with runner._idle:
        runner._inflight += 1


def test_a_message_esb_keeps_failing_to_settle_is_dead_lettered_after_ten_give_backs(bench):
    b = bench()
    b.runner.start()
    delivery, tag = b.redelivered({"claim_id": "C-9"}, message_id="u-1")
    in_flight(b.runner)
    for _ in range(10):  # as if esb had given it back ten times already (a bug outside any step)
        b.runner.settler._pause("u-1")
    b.runner._give_back(Attempt(b.route.name, delivery, "u-1", "test:1"), RuntimeError("a bug outside any step"))
    [letter] = b.dead.wait_for(1)
    assert letter.headers[names.DLQ_ERROR_CLASS] == "unsettled"
    assert "esb could not settle it 10 times in a row" in letter.headers[names.DLQ_REASON]
    assert "RuntimeError: a bug outside any step" in letter.headers[names.DLQ_REASON]
    assert tag.done.wait(5) and tag.settled == ["ack"]


def test_a_message_given_back_fewer_times_is_given_back_again(bench):
    b = bench()
    b.runner.start()
    delivery, tag = b.redelivered({"claim_id": "C-9"}, message_id="u-2")
    in_flight(b.runner)
    b.runner.settler._pause("u-2")
    b.runner._give_back(Attempt(b.route.name, delivery, "u-2", "test:1"), RuntimeError("a bug"))
    b.runner.timer.stop()  # runs the pending requeue now instead of after its pause
    assert tag.done.wait(5) and tag.settled == ["reject requeue=True"]


def test_a_copy_whose_key_another_worker_holds_waits_and_is_dead_lettered_after_its_waits(bench, tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    b = bench(SAGA_ROUTE, store=store)
    assert store.claim(b.route.name, "s:C-1", f"{owner_id()}:elsewhere", 600).status == "claimed"  # a live holder
    b.runner.start()
    b.send({"claim_id": "C-1"}, message_id="m-busy")
    deadline = time.monotonic() + 5
    while not b.recorder.named("on_retry") and time.monotonic() < deadline:
        time.sleep(0.05)
    [waited] = b.recorder.named("on_retry")
    assert (waited["reason"], waited["next_attempt"]) == ("busy", 1) and b.ledger.calls == []
    attempt = Attempt(b.route.name, delivery_of(b, {"claim_id": "C-1"}), "m-busy", "test:1")
    attempt.key = "s:C-1"
    # ten waits while the holder's lease runs are not the end: a holder whose machine died keeps it
    tenth = retry.state_message(attempt, Message({"claim_id": "C-1"}, message_id="m-busy"), 0, 1, SEAL,
                                busy=retry.MAX_BUSY)
    b.broker.publish("", b.route.source.queue, tenth).result(5)
    deadline = time.monotonic() + 5
    while len(b.recorder.named("on_retry")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [w["reason"] for w in b.recorder.named("on_retry")] == ["busy", "busy"] and b.dead.received == []
    last = retry.state_message(attempt, Message({"claim_id": "C-1"}, message_id="m-busy"), 0, 1, SEAL,
                               busy=retry.MAX_BUSY_IN_LEASE)
    b.broker.publish("", b.route.source.queue, last).result(5)
    [letter] = b.dead.wait_for(1)
    assert letter.headers[names.DLQ_ERROR_CLASS] == "busy"
    assert "stayed in progress on another worker through 1000 waits" in letter.headers[names.DLQ_REASON]
    assert b.ledger.calls == []
    store.close()


def test_a_first_delivery_is_claimed_before_its_first_call_which_runs_on_a_lane(bench, tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    b = bench(SAGA_ROUTE, store=store)
    seen = []
    call = b.ledger.call

    def looking(operation, message, **kw):
        record = store.get(b.route.name, "s:C-1")  # what another worker's claim would meet
        seen.append((operation, threading.current_thread().name, record.state, record.owner.startswith("test:")))
        return call(operation, message, **kw)
    b.ledger.call = looking
    b.runner.start()
    b.send({"claim_id": "C-1"})
    b.out.wait_for(1)
    b.runner.drain(5)
    lane = f"esb-{b.route.name}-"
    assert [(op, name.startswith(lane), state, mine) for op, name, state, mine in seen] == [
        ("check", True, "in_progress", True), ("post", True, "in_progress", True)]
    assert store.get(b.route.name, "s:C-1").state == "done"
    store.close()


def test_a_claim_the_store_fails_gives_the_delivery_back_unrun_and_it_runs_once_the_store_is_back(bench, tmp_path):
    path = tmp_path / "idem.sqlite3"
    store = SqliteStore(path, busy_timeout=0.2)
    b = bench(SAGA_ROUTE, store=store)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    b.runner.start()
    b.send({"claim_id": "C-1"})
    deadline = time.monotonic() + 5
    while not b.recorder.named("on_give_back") and time.monotonic() < deadline:
        time.sleep(0.02)
    other.execute("ROLLBACK")
    other.close()
    [given_back] = b.recorder.named("on_give_back")[:1]
    assert "locked" in str(given_back["error"]) and b.ledger.calls == []
    assert len(b.out.wait_for(1)) == 1  # requeued after its pause, then run once
    b.runner.drain(5)
    assert b.ledger.operations() == ["check", "post"] and store.get(b.route.name, "s:C-1").state == "done"
    store.close()


def test_a_delivery_handed_over_after_the_route_drained_leaves_no_claim_behind(bench, tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    b = bench(SAGA_ROUTE, store=store)
    b.runner.start()
    assert b.runner.drain(5)
    late = Delivery(json.dumps({"claim_id": "C-1"}).encode(), "application/json", {}, "m-late",
                    b.route.source.queue, False, Tag())
    b.runner._on_delivery(late)  # pika can still hand one over between the cancel and its answer
    time.sleep(0.3)  # what a claim on the store's commit thread would take
    assert store.get(b.route.name, "s:C-1") is None  # its redelivery will not find its key held
    assert b.ledger.calls == []
    store.close()


def test_the_last_calls_record_is_written_without_waiting_and_a_give_back_resumes_after_it(bench, tmp_path):
    store = SqliteStore(tmp_path / "idem.sqlite3")
    b = bench(SAGA_ROUTE, store=store)
    waited, recorded = [], []
    later, now, finish_later = store.record_step_later, store.record_step, store.finish_later
    store.record_step_later = lambda *a: recorded.append(a[3].label) or later(*a)
    store.record_step = lambda *a: waited.append(a[3].label) or now(*a)
    failures = [sqlite3.OperationalError("disk I/O error")]

    def finish_failing_once(route, key, owner, outcome, then):
        if not failures:
            return finish_later(route, key, owner, outcome, then)
        error = failures.pop()
        store._committer.submit(lambda db: (_ for _ in ()).throw(error), then)  # its transaction fails
    store.finish_later = finish_failing_once
    b.runner.start()
    b.send({"claim_id": "C-1"})
    b.out.wait_for(2, timeout=10)  # `done` failed: given back, run again from after `post`, published again
    b.runner.drain(5)
    assert (waited, recorded) == (["check"], ["post"])  # `post` is the last call: only `tell` follows it
    assert b.ledger.operations() == ["check", "post"]   # the record written without waiting held
    assert [f["outcome"] for f in b.recorder.named("after_message")] == ["given_back", "acked"]
    assert store.get(b.route.name, "s:C-1").state == "done"
    store.close()


def delivery_of(b, body: dict) -> Delivery:
    return Delivery(json.dumps(body).encode(), "application/json", {}, "m-busy", b.route.source.queue, False, None)


PASS_ROUTE = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
steps:
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""


def test_an_unchanged_json_body_goes_on_as_it_came_and_one_with_an_exponent_is_written_out_in_full(bench):
    b = bench(PASS_ROUTE)
    b.runner.start()
    came = b'{ "amount": 1234.50, "memo": "as typed" }\n'
    b.send(came, message_id="m-1")
    b.send(b'{"amount": 1.2345E+3}', message_id="m-2")
    out = {delivery.message_id: delivery.body for delivery in b.out.wait_for(2)}
    assert out["m-1"] == came  # not written again: the same bytes, so the same amount
    assert out["m-2"] == b'{"amount":1234.5}'  # a ledger reads 1234.5, never 1.2345E+3


def test_a_body_a_step_changed_is_written_afresh(bench):
    b = bench()
    b.runner.start()
    b.send(b'{ "claim_id": "C-1" }')
    [out] = b.out.wait_for(1)
    assert out.body == b'{"claim_id":"C-1","checked":{"ok":"check"},"posted":{"ok":"post"}}'
