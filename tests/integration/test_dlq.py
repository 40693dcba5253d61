"""Dead letters on the embedded broker and on RabbitMQ: browse leaves them in place, show tells why,
replay after the fix delivers once (or resumes at the failed step), purge removes only what it names."""

from __future__ import annotations

import time

import pytest

from esb.errors import EsbError
from esb.runtime import dlq
from esb.runtime.state import Seal
from esb.testing.http import StubResponse
from esb.transform import jsoncodec

LEDGER_ADAPTER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 2s
operations:
  create_voucher: {{method: POST, path: /vouchers}}
  archive: {{method: POST, path: /archive}}
"""

ONE_CALL = """\
  - label: create-voucher
    to: {adapter: ledger, operation: create_voucher, into: receipt}
"""

TWO_CALLS = ONE_CALL + """\
  - label: archive
    to: {adapter: ledger, operation: archive}
"""


def route_files(uid: str, ledger, calls: str) -> dict[str, str]:
    route = f"""\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
concurrency: 2
idempotency: {{key: claim_id}}
retry: {{attempts: 3, in_process: 0, backoff: {{initial: 200ms, multiplier: 1, max: 1s}}}}
steps:
{calls}  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
    return {"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url), "routes/r.yaml": route}


def wait_for_depth(bus, queue: str, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        depth = bus.broker.queue_depth(queue)
        if depth is not None and depth[0] == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{queue} never held {count} messages (it holds {bus.broker.queue_depth(queue)})")


def dead_letter(bus, uid: str, *claims: str) -> list[str]:
    """Send one claim per id and wait until each has been dead-lettered."""
    ids = [bus.send(f"in-{uid}", "x", f'{{"claim_id": "{c}", "amount": 10.05}}'.encode(), headers={"source": "oa"})
           for c in claims]
    wait_for_depth(bus, f"r-{uid}.dlq", len(claims))
    return ids


def test_browse_shows_id_step_and_reason_and_leaves_the_dead_letters_in_place(bus, run_routes, ledger, uid):
    for _ in range(2):
        ledger.enqueue("/vouchers", 400, {"error": "account 9999 does not exist"})
    runtime = run_routes(route_files(uid, ledger, ONE_CALL))
    ids = dead_letter(bus, uid, "C-1", "C-2")
    first = dlq.browse(bus.broker, f"r-{uid}", seal=runtime.seal)
    again = dlq.browse(bus.broker, f"r-{uid}", seal=runtime.seal)
    assert sorted(letter.id for letter in first) == sorted(ids)
    assert [letter.id for letter in again] == [letter.id for letter in first]
    letter = first[0]
    assert letter.route == f"r-{uid}" and letter.step == "create-voucher" and letter.resume_step == 0
    assert "400" in letter.reason and letter.error_class == "permanent" and letter.attempts == 1
    assert letter.compensation == "none" and letter.age is not None and letter.age.total_seconds() < 60
    assert dict(letter.headers) == {"source": "oa"}
    assert bus.broker.queue_depth(f"r-{uid}.dlq")[0] == 2


def test_show_finds_a_dead_letter_by_id_with_its_original_body(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 422, {"error": "period closed"})
    runtime = run_routes(route_files(uid, ledger, ONE_CALL))
    [message_id] = dead_letter(bus, uid, "C-3")
    letter = dlq.find(bus.broker, [f"missing-{uid}", f"r-{uid}"], message_id, seal=runtime.seal)
    assert letter is not None and letter.id == message_id
    assert letter.body == b'{"claim_id": "C-3", "amount": 10.05}' and letter.content_type == "application/json"
    assert letter.failed_body is not None and jsoncodec.loads(letter.failed_body)["claim_id"] == "C-3"
    assert dlq.find(bus.broker, [f"r-{uid}"], "no-such-id", seal=runtime.seal) is None


def test_replay_after_the_fix_delivers_through_the_route_once_and_leaves_the_others(bus, run_routes, ledger, uid):
    for _ in range(2):
        ledger.enqueue("/vouchers", 400, {"error": "account 9999 does not exist"})
    runtime = run_routes(route_files(uid, ledger, ONE_CALL))
    fixed, other = dead_letter(bus, uid, "C-4", "C-5")
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-4"})  # the fix: the ledger accepts it now
    bus.listen(f"seen-{uid}", f"out-{uid}")
    progress = []
    count = dlq.replay(bus.broker, f"r-{uid}", ids=[fixed], route_model=runtime.project.routes[f"r-{uid}"],
                       progress=lambda done, total: progress.append((done, total)), seal=runtime.seal)
    [delivered] = bus.wait_for(f"seen-{uid}", 1)
    bus.settle()
    assert count == 1 and progress == [(1, 1)]
    assert delivered.message_id == fixed and len(bus.received[f"seen-{uid}"]) == 1
    assert jsoncodec.loads(delivered.body)["receipt"] == {"voucher_no": "V-4"}
    assert len(ledger.requests_to("/vouchers")) == 3
    assert [letter.id for letter in dlq.browse(bus.broker, f"r-{uid}", seal=runtime.seal)] == [other]


def test_replay_all_empties_the_dead_letter_queue(bus, run_routes, ledger, uid):
    for _ in range(2):
        ledger.enqueue("/vouchers", 400, {"error": "account 9999 does not exist"})
    runtime = run_routes(route_files(uid, ledger, ONE_CALL))
    ids = dead_letter(bus, uid, "C-6", "C-7")
    ledger.set_default(StubResponse(201, {"voucher_no": "V"}))
    bus.listen(f"seen-{uid}", f"out-{uid}")
    assert dlq.replay(bus.broker, f"r-{uid}", replay_all=True, route_model=runtime.project.routes[f"r-{uid}"],
                      seal=runtime.seal) == 2
    got = bus.wait_for(f"seen-{uid}", 2)
    bus.settle()
    assert sorted(d.message_id for d in got) == sorted(ids) and len(bus.received[f"seen-{uid}"]) == 2
    assert dlq.browse(bus.broker, f"r-{uid}", seal=runtime.seal) == []


def test_replay_from_the_failed_step_resumes_there_and_repeats_only_that_call(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-8"})
    ledger.enqueue("/archive", 400, {"error": "archive refused"})
    runtime = run_routes(route_files(uid, ledger, TWO_CALLS))
    [message_id] = dead_letter(bus, uid, "C-8")
    ledger.enqueue("/archive", 201, {"archived": True})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    count = dlq.replay(bus.broker, f"r-{uid}", ids=[message_id], from_step="archive",
                       route_model=runtime.project.routes[f"r-{uid}"], seal=runtime.seal)
    [delivered] = bus.wait_for(f"seen-{uid}", 1)
    bus.settle()
    assert count == 1 and delivered.message_id == message_id
    assert len(ledger.requests_to("/vouchers")) == 1 and len(ledger.requests_to("/archive")) == 2
    retried = ledger.requests_to("/archive")[1]
    assert retried.json()["receipt"] == {"voucher_no": "V-8"}  # the body as it stood at the failed step
    assert dlq.browse(bus.broker, f"r-{uid}", seal=runtime.seal) == []


def test_replay_from_another_step_than_the_failed_one_is_refused_and_moves_nothing(bus, run_routes, ledger, uid):
    ledger.enqueue("/vouchers", 201, {"voucher_no": "V-9"})
    ledger.enqueue("/archive", 400, {"error": "archive refused"})
    runtime = run_routes(route_files(uid, ledger, TWO_CALLS))
    [message_id] = dead_letter(bus, uid, "C-9")
    with pytest.raises(EsbError, match="failed at step 'archive', not 'create-voucher'"):
        dlq.replay(bus.broker, f"r-{uid}", ids=[message_id], from_step="create-voucher",
                   route_model=runtime.project.routes[f"r-{uid}"], seal=runtime.seal)
    assert [letter.id for letter in dlq.browse(bus.broker, f"r-{uid}", seal=runtime.seal)] == [message_id]


def test_purge_by_id_removes_only_that_dead_letter(bus, run_routes, ledger, uid):
    for _ in range(3):
        ledger.enqueue("/vouchers", 400, {"error": "account 9999 does not exist"})
    runtime = run_routes(route_files(uid, ledger, ONE_CALL))
    doomed, *kept = dead_letter(bus, uid, "C-10", "C-11", "C-12")
    assert dlq.purge(bus.broker, f"r-{uid}", [doomed], seal=runtime.seal) == 1
    assert sorted(letter.id for letter in dlq.browse(bus.broker, f"r-{uid}", seal=runtime.seal)) == sorted(kept)
    assert dlq.purge(bus.broker, f"r-{uid}", seal=runtime.seal) == 2
    assert dlq.browse(bus.broker, f"r-{uid}", seal=runtime.seal) == []


def test_a_missing_dead_letter_queue_is_a_clear_error(bus, uid):
    with pytest.raises(EsbError, match=f"no queue 'nothing-{uid}.dlq'"):
        dlq.browse(bus.broker, f"nothing-{uid}", seal=Seal(b'k' * 32))
