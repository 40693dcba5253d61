"""The bus end to end, on the embedded broker and on RabbitMQ: every message arrives exactly once,
or dead-letters saying why; nothing is lost."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from esb.testing.http import StubResponse
from esb.transform import jsoncodec

LEDGER_ADAPTER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 2s
operations:
  create_voucher: {{method: POST, path: /vouchers}}
  cancel_voucher: {{method: DELETE, path: "/vouchers/{{voucher_no}}"}}
  archive: {{method: POST, path: /archive}}
  post_entries: {{method: POST, path: /entries}}
"""


def relay_route(uid: str, steps: str, extra: str = "") -> str:
    return f"""\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
concurrency: 4
retry: {{attempts: 4, in_process: 0, backoff: {{initial: 200ms, multiplier: 1, max: 1s}}}}
{extra}steps:
{steps}"""


def voucher_steps(uid: str) -> str:
    """Post a voucher (undone by cancel), post its entries, tell the ERP: the saga most tests need."""
    return f"""\
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt, compensate: {{operation: cancel_voucher}}}}
  - label: post-entries
    to: {{adapter: ledger, operation: post_entries, into: entries}}
  - label: tell-erp
    publish: {{exchange: out-{uid}, routing_key: done}}
"""


def dlq(uid: str) -> str:
    return f"r-{uid}.dlq"


def test_a_json_message_is_converted_and_published_exactly_once(bus, run_routes, uid):
    steps = f"""\
  - json_to_xml: {{root: Voucher}}
  - publish: {{exchange: out-{uid}, routing_key: voucher}}
"""
    run_routes({"routes/r.yaml": relay_route(uid, steps)})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    ids = [bus.send(f"in-{uid}", "x", json.dumps({"no": i, "amount": "12.30"}).encode()) for i in range(20)]
    got = bus.wait_for(f"seen-{uid}", 20)
    bus.settle()
    assert sorted(d.message_id for d in bus.received[f"seen-{uid}"]) == sorted(ids)
    assert all(b"<amount>12.30</amount>" in d.body for d in got)
    assert got[0].content_type == "application/xml"


def test_500_500_200_retries_resume_and_post_once_with_one_idempotency_key(bus, run_routes, ledger, uid):
    for status in (500, 500):
        ledger.enqueue("/vouchers", status, {"error": "down"})
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-1"})
    steps = f"""\
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                "routes/r.yaml": relay_route(uid, steps)})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    message_id = bus.send(f"in-{uid}", "x", b'{"claim_id": "C-1", "amount": 10.05}')
    got = bus.wait_for(f"seen-{uid}", 1)
    bus.settle()
    posts = ledger.requests_to("/vouchers")
    assert len(posts) == 3
    assert {p.headers["Idempotency-Key"] for p in posts} == {f"{message_id}:create-voucher"}
    assert len(bus.received[f"seen-{uid}"]) == 1
    assert jsoncodec.loads(got[0].body) == {"claim_id": "C-1", "amount": Decimal("10.05"),
                                            "receipt": {"voucher_no": "V-1"}}


def test_a_400_dead_letters_once_with_the_reason_in_headers(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 400, {"error": "account 9999 does not exist"})
    steps = """\
  - label: create-voucher
    to: {adapter: ledger, operation: create_voucher}
"""
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                "routes/r.yaml": relay_route(uid, steps)})
    bus.listen(dlq(uid))
    body = b'{"claim_id": "C-2", "amount": 1.00}'
    message_id = bus.send(f"in-{uid}", "x", body, headers={"source": "oa"})
    [letter] = bus.wait_for(dlq(uid), 1)
    h = letter.headers
    assert letter.body == body and letter.message_id == message_id
    assert h["source"] == "oa"
    assert h["x-esb-route"] == f"r-{uid}" and h["x-esb-failed-step"] == "create-voucher"
    assert h["x-esb-error-class"] == "permanent" and h["x-esb-exception"] == "PermanentError"
    assert "400" in h["x-esb-reason"] and h["x-esb-attempts"] == 1
    assert h["x-esb-compensation"] == "none"
    assert h["x-esb-first-failure"] and h["x-esb-last-failure"]
    assert len(ledger.requests_to("/vouchers")) == 1


def test_retry_after_is_honoured(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 429, {"error": "slow down"}, headers={"Retry-After": "1"})
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-3"})
    steps = f"""\
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                "routes/r.yaml": relay_route(uid, steps).replace("in_process: 0", "in_process: 2")})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-3"}')
    bus.wait_for(f"seen-{uid}", 1)
    first, second = ledger.requests_to("/vouchers")
    assert second.received_at - first.received_at >= 0.95


def test_a_later_permanent_failure_compensates_the_voucher_then_dead_letters(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-9"})
    ledger.enqueue("/archive", 422, {"error": "archive refused"})
    ledger.enqueue("/vouchers/V-9", 204)
    steps = """\
  - label: create-voucher
    to: {adapter: ledger, operation: create_voucher, compensate: {operation: cancel_voucher}}
  - label: archive
    to: {adapter: ledger, operation: archive}
"""
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                "routes/r.yaml": relay_route(uid, steps)})
    bus.listen(dlq(uid))
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-9"}')
    [letter] = bus.wait_for(dlq(uid), 1)
    assert letter.headers["x-esb-failed-step"] == "archive"
    assert letter.headers["x-esb-compensation"] == "ok"
    [cancel] = ledger.requests_to("/vouchers/V-9")
    assert cancel.method == "DELETE"


def test_an_unroutable_output_after_a_voucher_compensates_it_then_dead_letters(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-8"})
    ledger.enqueue("/vouchers/V-8", 204)
    steps = f"""\
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher, compensate: {{operation: cancel_voucher}}}}
  - label: tell-erp
    publish: {{exchange: nowhere-{uid}, routing_key: lost}}
"""
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                "routes/r.yaml": relay_route(uid, steps)})
    bus.listen(dlq(uid))
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-8"}')
    [letter] = bus.wait_for(dlq(uid), 1)
    assert (letter.headers["x-esb-failed-step"], letter.headers["x-esb-compensation"]) == ("tell-erp", "ok")
    assert "no queue is bound" in letter.headers["x-esb-reason"]
    assert [r.method for r in ledger.requests_to("/vouchers")] == ["POST"]
    assert [r.method for r in ledger.requests_to("/vouchers/V-8")] == ["DELETE"]


def test_a_duplicate_publish_posts_once_and_both_copies_are_acked(bus, run_routes, ledger, uid):
    ledger.route("/vouchers", lambda request: StubResponse(201, {"voucher_no": "V-D"}))
    steps = f"""\
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
    runtime = run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                          "routes/r.yaml": relay_route(uid, steps, "idempotency: {key: claim_id}\n")})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-D"}')
    bus.wait_for(f"seen-{uid}", 1)
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-D"}')
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and runtime.broker.queue_depth(f"r-{uid}") != (0, 1):
        time.sleep(0.1)
    bus.settle(1.0)
    assert len(ledger.requests_to("/vouchers")) == 1
    assert len(bus.received[f"seen-{uid}"]) == 1
    assert runtime.broker.queue_depth(f"r-{uid}")[0] == 0


def test_a_poison_message_is_dead_lettered_and_the_worker_keeps_going(bus, run_routes, uid):
    steps = f"""\
  - json_to_xml: {{root: Doc}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
    run_routes({"routes/r.yaml": relay_route(uid, steps)})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    bus.listen(dlq(uid))
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-P", ')
    bus.send(f"in-{uid}", "x", b'{"ok": true}')
    [letter] = bus.wait_for(dlq(uid), 1)
    assert letter.headers["x-esb-error-class"] == "transform"
    assert "JSON syntax error" in letter.headers["x-esb-reason"]
    assert len(bus.wait_for(f"seen-{uid}", 1)) == 1


def test_an_unroutable_output_is_a_failure_not_a_drop(bus, run_routes, uid):
    steps = f"""\
  - publish: {{exchange: nowhere-{uid}, routing_key: lost}}
"""
    run_routes({"routes/r.yaml": relay_route(uid, steps)})
    bus.listen(dlq(uid))
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-U"}')
    [letter] = bus.wait_for(dlq(uid), 1)
    assert "no queue is bound" in letter.headers["x-esb-reason"]


def test_a_retry_keeps_the_idempotency_key_even_when_the_body_no_longer_holds_it(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 503, {"error": "busy"})
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-K"})
    steps = f"""\
  - map: {{output: {{voucher_no: "concat('OA-', claim_id)"}}}}
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                "routes/r.yaml": relay_route(uid, steps, "idempotency: {key: claim_id}\n")})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    bus.listen(dlq(uid))
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-K"}')
    [out] = bus.wait_for(f"seen-{uid}", 1)
    assert jsoncodec.loads(out.body) == {"voucher_no": "V-K"}
    assert bus.received[dlq(uid)] == []
    assert len(ledger.requests_to("/vouchers")) == 2


def test_a_transient_retry_resumes_at_the_failing_step_without_reposting(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-5"})
    ledger.enqueue("/archive", 503, {"error": "archive down"})
    ledger.enqueue("/archive", 201, {"archive_id": "A-5"})
    steps = f"""\
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt}}
  - label: archive
    to: {{adapter: ledger, operation: archive, into: archived}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                "routes/r.yaml": relay_route(uid, steps)})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-5"}')
    [out] = bus.wait_for(f"seen-{uid}", 1)
    assert jsoncodec.loads(out.body) == {"claim_id": "C-5", "receipt": {"voucher_no": "V-5"},
                                         "archived": {"archive_id": "A-5"}}
    assert len(ledger.requests_to("/vouchers")) == 1
    assert len(ledger.requests_to("/archive")) == 2
