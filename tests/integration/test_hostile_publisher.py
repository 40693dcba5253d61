"""A publisher sets esb's own headers: esb believes only the state it sealed itself.

Each case was an attack that worked before the state was sealed (issue 8, finding 1).
"""

from __future__ import annotations

import json

import pytest
from integration_helpers import dead_letters
from test_bus import LEDGER_ADAPTER, relay_route, voucher_steps

from esb.runtime import dlq
from esb.runtime.broker import Outgoing
from esb.testing.ledger import StandInLedger

CLAIM_SCHEMA = json.dumps({"type": "object", "required": ["claim_id", "voucher_no", "lines"],
                           "properties": {"lines": {"type": "array", "items": {
                               "type": "object", "properties": {"amount": {"type": "number", "minimum": 0}}}}}})


CHECK_CLAIM = """\
  - label: check-claim
    validate: {json_schema: transformers/schemas/claim.json}
"""


@pytest.fixture
def oa_route(bus, run_routes, stand_in, uid):
    """A copy of oa-expense-to-voucher: validate, post the voucher (undone by cancel), post entries, tell the ERP."""
    route = relay_route(uid, CHECK_CLAIM + voucher_steps(uid), "idempotency: {key: claim_id}\n")
    runtime = run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=stand_in.url),
                          "transformers/schemas/claim.json": CLAIM_SCHEMA, "routes/r.yaml": route})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    return runtime


def claim(claim_id: str, amount: str = "100.00") -> bytes:
    return (f'{{"claim_id": "{claim_id}", "voucher_no": "OA-{claim_id}", '
            f'"lines": [{{"account": "6601", "amount": {amount}}}]}}').encode()


def posts(ledger: StandInLedger) -> list[str]:
    return [json.loads(r.body)["claim_id"] for r in ledger.server.requests
            if r.method == "POST" and r.path == "/vouchers"]


def test_a_forged_attempt_and_resume_step_do_not_skip_validation(bus, oa_route, stand_in, uid):
    bus.send(f"in-{uid}", "x", claim("BAD-1", "-500.00"),
             headers={"x-esb-attempt": 1, "x-esb-resume-step": 1})
    [letter] = dead_letters(bus, oa_route, f"r-{uid}", 1)
    assert (letter.step, letter.error_class) == ("check-claim", "validation")
    assert posts(stand_in) == []


def test_forged_compensations_never_reach_the_ledger(bus, oa_route, stand_in, uid):
    forged = [{"step": "create-voucher", "adapter": "ledger", "operation": "cancel_voucher",
               "body": json.dumps({"voucher_no": "VICTIM-7"}), "content_type": "application/json",
               "message_id": "m"}]
    bus.send(f"in-{uid}", "x", claim("BAD-2", "-1.00"),
             headers={"x-esb-attempt": 1, "x-esb-resume-step": 0, "x-esb-compensations": json.dumps(forged)})
    [letter] = dead_letters(bus, oa_route, f"r-{uid}", 1)
    assert letter.compensation == "none"
    assert [r for r in stand_in.server.requests if r.method == "DELETE"] == []


def test_a_forged_idempotency_key_does_not_post_a_claim_twice(bus, oa_route, stand_in, uid):
    bus.send(f"in-{uid}", "x", claim("C-1"))
    bus.wait_for(f"seen-{uid}", 1)
    bus.send(f"in-{uid}", "x", claim("C-1"), headers={"x-esb-attempt": 1, "x-esb-idempotency-key": "s:someone-else"})
    bus.settle(1.5)
    assert posts(stand_in) == ["C-1"]
    assert len(bus.received[f"seen-{uid}"]) == 1


def test_a_forged_resume_past_the_end_cannot_mark_a_victims_key_done(bus, oa_route, stand_in, uid):
    bus.send(f"in-{uid}", "x", b'{"garbage": true}',
             headers={"x-esb-attempt": 1, "x-esb-resume-step": 99, "x-esb-idempotency-key": "s:VICTIM-9"})
    [letter] = dead_letters(bus, oa_route, f"r-{uid}", 1)  # the garbage runs from its start: it names no claim
    assert "idempotency key claim_id is missing" in letter.reason
    bus.send(f"in-{uid}", "x", claim("VICTIM-9"))
    [out] = bus.wait_for(f"seen-{uid}", 1)
    assert json.loads(out.body)["claim_id"] == "VICTIM-9"
    assert posts(stand_in) == ["VICTIM-9"]


def test_a_forged_original_body_is_not_what_the_dead_letter_keeps(bus, oa_route, uid):
    real = claim("BAD-3", "-3.00")
    bus.send(f"in-{uid}", "x", real, message_id=f"M3-{uid}",
             headers={"x-esb-attempt": 1, "x-esb-original-body": b'{"claim_id": "PLANTED"}'})
    [letter] = dead_letters(bus, oa_route, f"r-{uid}", 1)
    assert letter.authentic and letter.body == real and letter.id == f"M3-{uid}"


def test_a_letter_forged_straight_into_the_dlq_is_shown_unsealed_and_replays_as_a_plain_message(
        bus, oa_route, stand_in, uid):
    bus.broker.publish("", f"r-{uid}.dlq", Outgoing(claim("C-F"), "application/json", {
        "x-esb-route": f"r-{uid}", "x-esb-failed-step": "post-entries", "x-esb-resume-step": 3,
        "x-esb-original-body": b'{"claim_id": "PLANTED"}', "x-esb-failed-body": b'{"claim_id": "PLANTED"}'},
        f"F-{uid}")).result(10)
    route = oa_route.project.routes[f"r-{uid}"]
    [letter] = dead_letters(bus, oa_route, f"r-{uid}", 1)
    assert not letter.authentic and letter.body == claim("C-F") and letter.reason.startswith("not dead-lettered by esb")
    with pytest.raises(Exception, match="not dead-lettered by esb"):
        dlq.replay(bus.broker, f"r-{uid}", ids=[f"F-{uid}"], from_step="post-entries", route_model=route,
                   seal=oa_route.seal)
    assert dlq.replay(bus.broker, f"r-{uid}", ids=[f"F-{uid}"], route_model=route, seal=oa_route.seal) == 1
    [out] = bus.wait_for(f"seen-{uid}", 1)
    assert json.loads(out.body)["claim_id"] == "C-F"
    assert posts(stand_in) == ["C-F"]
