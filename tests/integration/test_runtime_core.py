"""The message core as a user sees it: replays after compensation, typed keys, a slow message."""

from __future__ import annotations

import json
import time

from integration_helpers import dead_letters
from test_bus import LEDGER_ADAPTER, relay_route, voucher_steps

from esb.runtime import dlq
from esb.runtime.broker import Outgoing


def voucher_route(bus, run_routes, stand_in, uid):
    runtime = run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=stand_in.url),
                          "routes/r.yaml": relay_route(uid, voucher_steps(uid), "idempotency: {key: claim_id}\n")})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    return runtime


def claim(claim_id: str) -> bytes:
    return json.dumps({"claim_id": claim_id, "voucher_no": f"OA-{claim_id}", "total": 10}).encode()


def test_replaying_a_compensated_dead_letter_posts_the_voucher_anew_and_it_exists_once(bus, run_routes, stand_in, uid):
    runtime = voucher_route(bus, run_routes, stand_in, uid)
    for n in range(3):
        stand_in.fail_next("/entries", 400)
        bus.send(f"in-{uid}", "x", claim(f"C-{n}"), message_id=f"M-{n}-{uid}")
    letters = dead_letters(bus, runtime, f"r-{uid}", 3)
    assert [letter.compensation for letter in letters] == ["ok"] * 3
    assert stand_in.vouchers == {}  # each voucher was cancelled when its message died
    assert dlq.replay(bus.broker, f"r-{uid}", replay_all=True, route_model=runtime.project.routes[f"r-{uid}"],
                      seal=runtime.seal) == 3
    outputs = bus.wait_for(f"seen-{uid}", 3)
    assert sorted(v["claim_id"] for v in stand_in.vouchers.values()) == ["C-0", "C-1", "C-2"]
    posted = {json.loads(out.body)["receipt"]["voucher_id"] for out in outputs}
    assert posted == set(stand_in.vouchers), "an output names a voucher the ledger does not hold"
    keys = [r.headers["Idempotency-Key"] for r in stand_in.server.requests if r.path == "/vouchers"]
    assert sorted(keys) == sorted([f"M-{n}-{uid}:create-voucher" for n in range(3)]
                                  + [f"M-{n}-{uid}:create-voucher:g2" for n in range(3)])


def test_replaying_a_dead_letter_whose_voucher_was_not_undone_keeps_its_key(bus, run_routes, stand_in, uid):
    runtime = voucher_route(bus, run_routes, stand_in, uid)
    stand_in.fail_next("/entries", 400)
    stand_in.fail_next("/vouchers/OA-K-1", 400)  # the cancel fails: the voucher stays
    bus.send(f"in-{uid}", "x", claim("K-1"), message_id=f"K-{uid}")
    [letter] = dead_letters(bus, runtime, f"r-{uid}", 1)
    assert letter.compensation.startswith("failed")
    dlq.replay(bus.broker, f"r-{uid}", ids=[f"K-{uid}"], route_model=runtime.project.routes[f"r-{uid}"],
               seal=runtime.seal)
    bus.wait_for(f"seen-{uid}", 1)
    assert [v["claim_id"] for v in stand_in.vouchers.values()] == ["K-1"]
    keys = {r.headers["Idempotency-Key"] for r in stand_in.server.requests if r.path == "/vouchers"}
    assert keys == {f"K-{uid}:create-voucher"}


def test_a_string_key_and_an_integer_key_name_two_messages(bus, run_routes, uid):
    steps = f"  - publish: {{exchange: out-{uid}, routing_key: done}}\n"
    runtime = run_routes({"routes/r.yaml": relay_route(uid, steps, "idempotency: {key: ref}\n")})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    for body in (b'{"ref": 1}', b'{"ref": "1"}', b'{"ref": true}', b'{"ref": "True"}', b'{"ref": []}',
                 b'{"ref": "[]"}'):
        bus.send(f"in-{uid}", "x", body)
    outputs = bus.wait_for(f"seen-{uid}", 4)
    assert sorted(out.body for out in outputs) == sorted([b'{"ref": 1}', b'{"ref": "1"}', b'{"ref": "True"}',
                                                         b'{"ref": "[]"}'])  # unchanged: sent on as they came
    letters = dead_letters(bus, runtime, f"r-{uid}", 2)
    assert sorted(letter.reason for letter in letters) == [
        "the idempotency key ref is a boolean (True): it must be a string or an integer",
        "the idempotency key ref is a list ([]): it must be a string or an integer"]


def test_a_slow_message_does_not_hold_up_another_routes_messages(bus, run_routes, uid):
    big = "<Doc>" + "".join(f'<E n="{i}"><A>{i}.00</A><B>text {i}</B></E>' for i in range(150_000)) + "</Doc>"
    slow = f"""\
name: slow-{uid}
source: {{exchange: in-{uid}, binding_key: slow, format: xml}}
steps:
  - xml_to_json: {{}}
  - publish: {{exchange: out-{uid}, routing_key: slow}}
"""
    fast = relay_route(uid, f"  - publish: {{exchange: out-{uid}, routing_key: fast}}\n").replace(
        'binding_key: "#"', "binding_key: fast")
    run_routes({"routes/slow.yaml": slow, "routes/fast.yaml": fast})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    for _ in range(2):
        bus.send(f"in-{uid}", "slow", big.encode(), content_type="application/xml")
    time.sleep(0.2)  # the slow route is converting now
    sent = [bus.broker.publish(f"in-{uid}", "fast", Outgoing(json.dumps({"n": n}).encode(), "application/json", {},
                                                                f"fast-{n}")) for n in range(20)]
    assert all(confirmation.exception(10) is None for confirmation in sent)
    seen = bus.wait_for(f"seen-{uid}", 22, timeout=60)
    kinds = ["slow" if len(d.body) > 1000 else "fast" for d in seen]
    assert kinds[:20] == ["fast"] * 20, f"the fast route waited for the slow one's conversion: {kinds}"


def test_a_body_over_the_routes_max_body_is_dead_lettered_unread_with_its_size(bus, run_routes, uid):
    steps = f"  - publish: {{exchange: out-{uid}, routing_key: done}}\n"
    runtime = run_routes({"routes/r.yaml": relay_route(uid, steps, "max_body: 1KB\n")})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    big = b'{"pad": "' + b"x" * 2000 + b'"}'
    bus.send(f"in-{uid}", "x", big)
    bus.send(f"in-{uid}", "x", b'{"small": 1}')
    assert [out.body for out in bus.wait_for(f"seen-{uid}", 1)] == [b'{"small": 1}']
    [letter] = dead_letters(bus, runtime, f"r-{uid}", 1)
    assert (letter.error_class, letter.step, letter.body) == ("too_large", "receive", big)
    assert letter.reason == "the body is 2,011 bytes, over the route's limit of 1,024 (max_body)"
