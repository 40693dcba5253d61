"""RuntimeIO's adapter calls: the first attempt outside tenacity, the rest exactly as tenacity runs them."""

from __future__ import annotations

import pytest
import tenacity

from esb.adapters.resilience import CircuitOpen
from esb.errors import PermanentError, TransientError
from esb.runtime.worker import first_then_retrying


def _retrying(attempts: int, waits: list) -> tenacity.Retrying:
    return tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), wait=tenacity.wait_fixed(0.25),
                             sleep=waits.append, reraise=True,
                             retry=tenacity.retry_if_exception_type(TransientError)
                             & tenacity.retry_if_not_exception_type(CircuitOpen))


def _calls(*outcomes):
    seen = []

    def call(operation, message, *, idempotency_key):
        seen.append((operation, message, idempotency_key))
        outcome = outcomes[len(seen) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    return call, seen


def test_a_call_that_succeeds_is_made_once_and_never_waits():
    waits = []
    call, seen = _calls("ok")
    assert first_then_retrying(_retrying(3, waits), call, "op", "m", idempotency_key="k") == "ok"
    assert seen == [("op", "m", "k")] and waits == []


def test_a_transient_failure_is_retried_by_tenacity_with_its_wait_and_the_same_arguments():
    waits = []
    call, seen = _calls(TransientError("503"), TransientError("503"), "ok")
    assert first_then_retrying(_retrying(3, waits), call, "op", "m", idempotency_key="k") == "ok"
    assert seen == [("op", "m", "k")] * 3 and waits == [0.25, 0.25]


def test_the_attempts_count_the_first_one():
    waits = []
    last = TransientError("third")
    call, seen = _calls(TransientError("first"), TransientError("second"), last)
    with pytest.raises(TransientError) as raised:
        first_then_retrying(_retrying(3, waits), call, "op", "m", idempotency_key="k")
    assert raised.value is last and len(seen) == 3 and waits == [0.25, 0.25]


@pytest.mark.parametrize("error", [PermanentError("400"), CircuitOpen("ledger", 3.0)])
def test_what_tenacity_would_not_retry_is_raised_after_one_call(error):
    waits = []
    call, seen = _calls(error)
    with pytest.raises(type(error)) as raised:
        first_then_retrying(_retrying(3, waits), call, "op", "m", idempotency_key="k")
    assert raised.value is error and len(seen) == 1 and waits == []
