"""Retry tiers: which delay a failed or busy message waits, and the sealed state it waits with."""

from __future__ import annotations

import pytest
from runtime_fakes import delivery

from esb.message import Message
from esb.runtime import names, retry
from esb.runtime.attempt import Attempt
from esb.runtime.broker import Delivery
from esb.runtime.state import Seal, read_state

TIERS = (1000, 5000, 30000)


@pytest.mark.parametrize("next_attempt, delay", [(2, 1000), (3, 5000), (4, 30000), (9, 30000)])
def test_each_attempt_waits_in_its_tier_and_later_ones_in_the_last(next_attempt, delay):
    assert retry.tier_for(TIERS, next_attempt) == delay


@pytest.mark.parametrize("retry_after, delay", [(0.5, 1000), (1, 1000), (1.5, 5000), (5, 5000), (6, 30000),
                                                (3600, 30000)])
def test_a_retry_after_picks_the_first_tier_at_least_that_long(retry_after, delay):
    assert retry.tier_for(TIERS, 2, retry_after) == delay


def test_a_retry_after_never_shortens_the_wait_of_a_later_attempt():
    assert retry.tier_for(TIERS, 4, retry_after=1) == 30000


def test_without_tiers_a_retry_waits_a_second():
    assert retry.tier_for((), 2) == 1000


def test_busy_waits_grow_with_each_wait():
    tiers = (500, 1000, 2000, 4000, 8000)
    assert [retry.busy_tier(tiers, busy, None) for busy in range(5)] == [500, 1000, 2000, 4000, 8000]


def test_busy_waits_never_exceed_the_largest_tier():
    assert retry.busy_tier(TIERS, 20, None) == 30000


def test_the_holders_lease_caps_a_busy_wait():
    tiers = (500, 1000, 2000, 4000, 8000)
    assert retry.busy_tier(tiers, 4, lease_left=1.5) == 2000  # wanted 8 s, the lease runs out in 1.5 s
    assert retry.busy_tier(tiers, 4, lease_left=0.0) == 500   # never below half a second


def test_the_state_message_is_sealed_and_resumes_at_the_failing_step():
    seal = Seal(b"k" * 32)
    attempt = Attempt("r", delivery("m-1", headers={"x-trace": "t"}), "m-1", "w:1")
    attempt.key, attempt.generations = "s:C-1", {"create-voucher": 2}
    attempt.compensations = [{"step": "create-voucher", "key": "m-1:create-voucher:g2"}]
    now = Message({"claim_id": "C-1", "receipt": {"no": 7}}, headers={"x-trace": "t"}, message_id="m-1")
    out = retry.state_message(attempt, now, 1, 3, seal, busy=2)
    back = Delivery(out.body, out.content_type, out.headers, out.message_id, "r", False, 1)
    state, forged = read_state(back, "r", "m-1", seal)
    assert not forged
    assert (state.attempt, state.resume_step, state.busy, state.key) == (3, 1, 2, "s:C-1")
    assert dict(state.generations) == {"create-voucher": 2}
    assert list(state.compensations) == attempt.compensations
    assert state.original_body == b'{"claim_id": "C-1"}' and state.original_headers == {"x-trace": "t"}
    assert out.headers["x-trace"] == "t" and b'"receipt"' in out.body
    assert names.SEAL in out.headers
