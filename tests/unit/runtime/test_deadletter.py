"""The dead letter keeps the original message, says why it died, and is sealed for `esb dlq`."""

from __future__ import annotations

from runtime_fakes import delivery

from esb.errors import PermanentError
from esb.message import Message
from esb.runtime import deadletter, names
from esb.runtime.attempt import Attempt
from esb.runtime.state import RetryState, Seal

SEAL = Seal(b"k" * 32)
ORIGINAL = b'{"claim_id": "C-1", "total": -5}'


def attempt():
    return Attempt("oa-expense-to-voucher", delivery("m-1", ORIGINAL, {"x-source": "oa"}), "m-1", "w:1")


def test_a_dead_letter_carries_the_original_message_and_why_it_died():
    error = PermanentError("400 Bad Request: negative line", step="create-voucher")
    now = Message({"claim_id": "C-1", "state": "after"}, message_id="m-1")
    out = deadletter.letter(attempt(), error, "create-voucher", 1, now, "ok", {"create-voucher": 2}, SEAL)
    h = out.headers
    assert (out.body, out.message_id, h["x-source"]) == (ORIGINAL, "m-1", "oa")
    assert h[names.DLQ_ROUTE] == "oa-expense-to-voucher" and h[names.DLQ_STEP] == "create-voucher"
    assert h[names.DLQ_ERROR_CLASS] == "permanent" and h[names.DLQ_EXCEPTION] == "PermanentError"
    assert h[names.DLQ_REASON] == "400 Bad Request: negative line"
    assert h[names.DLQ_COMPENSATION] == "ok" and h[names.RESUME_STEP] == 1 and h[names.DLQ_ATTEMPTS] == 1
    assert h[names.GENERATIONS] == '{"create-voucher":2}'
    assert b'"after"' in h[names.DLQ_STATE_BODY]


def test_a_dead_letter_is_sealed_over_its_original_body():
    out = deadletter.letter(attempt(), PermanentError("x"), None, 0, None, "none", {}, SEAL)
    assert SEAL.verify("oa-expense-to-voucher", "m-1", out.body, out.headers)
    assert not SEAL.verify("oa-expense-to-voucher", "m-1", b"planted", out.headers)
    assert names.DLQ_STATE_BODY not in out.headers and out.headers[names.DLQ_STEP] == ""


def test_a_retried_message_is_dead_lettered_with_the_body_its_source_sent():
    a = attempt()
    a.state = RetryState(attempt=4, original_body=b'{"first": 1}', original_content_type="application/json",
                         original_headers={"x-source": "erp"}, first_failure="2026-12-04T10:00:00.000+00:00")
    out = deadletter.letter(a, PermanentError("x"), "s", 2, None, "none", {}, SEAL)
    assert out.body == b'{"first": 1}' and out.headers["x-source"] == "erp"
    assert out.headers[names.DLQ_ATTEMPTS] == 4
    assert out.headers[names.FIRST_FAILURE] == "2026-12-04T10:00:00.000+00:00"


def test_a_long_reason_is_cut_in_the_dead_letter():
    out = deadletter.letter(attempt(), PermanentError("y" * 5000), "s", 0, None, "none", {}, SEAL)
    assert len(out.headers[names.DLQ_REASON]) == 1024
