"""The seal: esb believes only the x-esb-* state it sealed itself."""

from __future__ import annotations

import pytest

from esb.runtime import names
from esb.runtime.broker import Delivery
from esb.runtime.state import FIRST_ATTEMPT, KEY_FILE, RetryState, Seal, load_key, read_state, state_headers

KEY = b"k" * 32
ROUTE, MID, BODY = "oa-expense-to-voucher", "m-1", b'{"claim_id": "C-1"}'


def sealed_headers(seal=None, **extra):
    headers = {**state_headers(RetryState(attempt=2, resume_step=1, key="s:C-1", generations={"post": 2})),
               "x-trace": "abc", **extra}
    return (seal or Seal(KEY)).sealed(ROUTE, MID, BODY, headers)


def delivery(headers, body=BODY, message_id=MID):
    return Delivery(body, "application/json", headers, message_id, ROUTE, False, 1)


def test_a_seal_verifies_what_it_sealed():
    assert Seal(KEY).verify(ROUTE, MID, BODY, sealed_headers())


@pytest.mark.parametrize("route, message_id, body", [
    ("other-route", MID, BODY), (ROUTE, "m-2", BODY), (ROUTE, MID, b'{"claim_id": "C-2"}')])
def test_a_seal_fails_when_the_route_message_id_or_body_changes(route, message_id, body):
    assert not Seal(KEY).verify(route, message_id, body, sealed_headers())


@pytest.mark.parametrize("name", [names.ATTEMPT, names.RESUME_STEP, names.IDEMPOTENCY_KEY, names.GENERATIONS])
def test_a_seal_fails_when_any_esb_header_changes(name):
    headers = sealed_headers()
    headers[name] = "99"
    assert not Seal(KEY).verify(ROUTE, MID, BODY, headers)


def test_a_seal_fails_when_an_esb_header_is_added():
    headers = {**sealed_headers(), "x-esb-planted": "1"}
    assert not Seal(KEY).verify(ROUTE, MID, BODY, headers)


def test_a_seal_fails_when_an_esb_header_is_removed():
    headers = sealed_headers()
    del headers[names.COMPENSATIONS]
    assert not Seal(KEY).verify(ROUTE, MID, BODY, headers)


def test_a_seal_made_with_another_key_fails():
    assert not Seal(KEY).verify(ROUTE, MID, BODY, sealed_headers(Seal(b"o" * 32)))


def test_a_seal_that_is_not_text_fails():
    headers = {**sealed_headers(), names.SEAL: 12345}
    assert not Seal(KEY).verify(ROUTE, MID, BODY, headers)


@pytest.mark.parametrize("forged", ["é" * 64, b"\xff" * 64, "", "0" * 64])
def test_a_forged_seal_of_any_text_or_bytes_fails_without_raising(forged):
    headers = {**sealed_headers(), names.SEAL: forged}
    assert not Seal(KEY).verify(ROUTE, MID, BODY, headers)
    assert read_state(delivery(headers), ROUTE, MID, Seal(KEY)) == (FIRST_ATTEMPT, True)


def test_a_seal_that_arrives_as_bytes_verifies():
    headers = sealed_headers()
    headers[names.SEAL] = headers[names.SEAL].encode("ascii")
    assert Seal(KEY).verify(ROUTE, MID, BODY, headers)


def test_headers_that_are_not_esb_headers_may_change_or_be_added():
    headers = {**sealed_headers(), "x-trace": "changed", "x-death": [{"count": 1}], "traceparent": "00-1"}
    assert Seal(KEY).verify(ROUTE, MID, BODY, headers)


def test_values_survive_the_str_bytes_and_int_round_trips_amqp_makes():
    headers = sealed_headers()
    back = {k: (v.encode() if isinstance(v, str) else v) for k, v in headers.items()}  # AMQP gives bytes back
    back[names.ATTEMPT] = str(headers[names.ATTEMPT])  # and an int as its text
    assert Seal(KEY).verify(ROUTE, MID, BODY, back)


def test_a_key_shorter_than_16_bytes_is_refused():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Seal(b"short")


def test_without_esb_headers_a_delivery_is_a_first_attempt_not_forged():
    state, forged = read_state(delivery({"x-trace": "abc"}), ROUTE, MID, Seal(KEY))
    assert state is FIRST_ATTEMPT and state.is_first and not forged


def test_unsealed_esb_headers_are_a_forged_first_attempt():
    headers = {names.ATTEMPT: 2, names.RESUME_STEP: 2}
    state, forged = read_state(delivery(headers), ROUTE, MID, Seal(KEY))
    assert state is FIRST_ATTEMPT and forged


def test_esb_headers_sealed_by_another_key_are_forged():
    state, forged = read_state(delivery(sealed_headers(Seal(b"o" * 32))), ROUTE, MID, Seal(KEY))
    assert state is FIRST_ATTEMPT and forged


def test_a_sealed_state_is_read_back_as_it_was_written():
    state, forged = read_state(delivery(sealed_headers()), ROUTE, MID, Seal(KEY))
    assert not forged
    assert (state.attempt, state.resume_step, state.key, dict(state.generations)) == (2, 1, "s:C-1", {"post": 2})


def test_a_configured_key_is_used_as_given(tmp_path):
    seal = load_key(tmp_path, "a-configured-key-of-some-length")
    assert seal.verify(ROUTE, MID, BODY, Seal(b"a-configured-key-of-some-length").sealed(ROUTE, MID, BODY, {}))
    assert not (tmp_path / KEY_FILE).exists()


def test_without_a_configured_key_one_is_made_once_readable_only_by_its_owner(tmp_path):
    first = load_key(tmp_path, None)
    second = load_key(tmp_path, None)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert second.verify(ROUTE, MID, BODY, first.sealed(ROUTE, MID, BODY, {}))
