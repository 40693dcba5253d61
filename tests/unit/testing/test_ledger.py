"""The stand-in ledger behaves as an idempotent ledger API does: a repeated key is answered with the
first answer, and a cancelled voucher is gone."""

import json
import urllib.request

import pytest

from esb.testing.ledger import StandInLedger


@pytest.fixture
def ledger():
    with StandInLedger() as stand_in:
        yield stand_in


def call(ledger: StandInLedger, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(ledger.url + path, data, method=method,
                                     headers={"Idempotency-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        text = answer.read()
        return answer.status, json.loads(text) if text else {}


VOUCHER = {"voucher_no": "OA-EXP-1", "lines": [{"account": "6602.03", "amount": "10.00"}]}


def test_a_voucher_posted_twice_under_one_key_exists_once(ledger):
    first = call(ledger, "POST", "/vouchers", "m1:create-voucher", VOUCHER)
    assert call(ledger, "POST", "/vouchers", "m1:create-voucher", VOUCHER) == first
    assert list(ledger.vouchers) == [first[1]["voucher_id"]]
    assert len(ledger.effects) == 1


def test_a_cancelled_voucher_is_gone_and_its_old_key_does_not_post_it_again(ledger):
    posted = call(ledger, "POST", "/vouchers", "m1:create-voucher", VOUCHER)
    assert call(ledger, "DELETE", "/vouchers/OA-EXP-1", "m1:create-voucher:compensate")[0] == 204
    assert ledger.vouchers == {}
    assert call(ledger, "POST", "/vouchers", "m1:create-voucher", VOUCHER) == posted  # the first answer, no voucher
    assert ledger.vouchers == {}
    again = call(ledger, "POST", "/vouchers", "m1:create-voucher:g1", VOUCHER)  # a new effect under a new key
    assert list(ledger.vouchers) == [again[1]["voucher_id"]] != [posted[1]["voucher_id"]]


def test_a_voucher_can_be_cancelled_by_its_ledger_id(ledger):
    _, answer = call(ledger, "POST", "/vouchers", "m1:create-voucher", VOUCHER)
    call(ledger, "DELETE", f"/vouchers/{answer['voucher_id']}", "m1:create-voucher:compensate")
    assert ledger.vouchers == {}
