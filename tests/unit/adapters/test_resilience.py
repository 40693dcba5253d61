"""The per-adapter rate limit and circuit breaker, on a fake clock."""

from __future__ import annotations

import pytest

from esb.adapters.resilience import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    CircuitOpen,
    ResilientAdapter,
    TokenBucket,
    breaker_for,
    bucket_for,
)
from esb.adapters.spec import AdapterSpec
from esb.errors import ConfigError, PermanentError, TransientError
from esb.message import Message


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Scheduled:
    """Timers run by hand: `due()` runs those whose time has come on the fake clock."""

    def __init__(self, clock: Clock):
        self.clock, self.pending = clock, []

    def __call__(self, delay, action):
        self.pending.append((self.clock.now + delay, action))

    def due(self):
        for item in [p for p in self.pending if p[0] <= self.clock.now]:
            self.pending.remove(item)
            item[1]()


def breaker(clock, **kwargs):
    settings = {"failures": 3, "within": 30.0, "open_for": 10.0, **kwargs}
    changes = []
    b = CircuitBreaker("ledger", clock=clock, schedule=Scheduled(clock), **settings)
    b.subscribe(lambda adapter, state: changes.append((adapter, state)))
    return b, changes


def test_the_bucket_lets_a_burst_through_then_paces_calls_at_the_rate():
    clock = Clock()
    bucket = TokenBucket("ledger", per_second=20, burst=40, max_wait=5, clock=clock, sleep=clock.sleep)
    assert [bucket.take() for _ in range(40)] == [0.0] * 40
    assert bucket.take() == pytest.approx(0.05)
    assert bucket.take() == pytest.approx(0.05)
    clock.now += 10  # idle: the burst is saved up again, not more
    assert sum(bucket.take() for _ in range(40)) == 0.0
    assert bucket.take() > 0


def test_the_bucket_refuses_a_call_that_would_wait_longer_than_max_wait():
    clock = Clock()
    bucket = TokenBucket("ledger", per_second=1, burst=1, max_wait=2, clock=clock, sleep=lambda s: None)
    bucket.take(), bucket.take(), bucket.take()  # reserved: the third waits 2 s
    with pytest.raises(TransientError, match="rate limit of the adapter 'ledger'.*max_wait 2s") as refused:
        bucket.take()
    assert refused.value.retry_after == pytest.approx(3.0)


def test_the_breaker_opens_after_n_failures_within_the_window_only():
    clock = Clock()
    b, changes = breaker(clock)
    b.failed(), b.failed()
    clock.now += 31  # those two fell out of the window
    b.failed(), b.failed()
    assert b.state == CLOSED
    b.failed()
    assert b.state == OPEN and changes == [("ledger", OPEN)]


def test_an_open_breaker_fails_fast_with_the_time_left_then_turns_half_open_by_itself():
    clock = Clock()
    b, changes = breaker(clock, failures=1)
    b.failed()
    clock.now += 4
    with pytest.raises(CircuitOpen, match="circuit breaker of the adapter 'ledger' is open") as refused:
        b.before_call()
    assert refused.value.retry_after == pytest.approx(6.0)
    assert isinstance(refused.value, TransientError)
    clock.now += 6
    b.schedule.due()
    assert b.state == HALF_OPEN and changes[-1] == ("ledger", HALF_OPEN)


def test_half_open_lets_one_trial_through_its_success_closes_its_failure_opens_again():
    clock = Clock()
    b, changes = breaker(clock, failures=1)
    b.failed()
    clock.now += 10
    b.schedule.due()
    b.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        b.before_call()  # a second caller while the trial runs
    b.failed()
    assert b.state == OPEN and b.schedule.pending  # open again: a new timer
    clock.now += 10
    b.schedule.due()
    b.before_call()
    b.succeeded()
    assert b.state == CLOSED
    assert [state for _, state in changes] == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]
    b.before_call()  # closed: calls go through


class Endpoint:
    def __init__(self, errors):
        self.errors, self.calls = list(errors), 0

    def call(self, operation, message, *, idempotency_key):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return message

    def close(self):
        pass


def test_the_wrapper_counts_transient_failures_only_and_sends_nothing_while_open():
    clock = Clock()
    b, _ = breaker(clock, failures=2)
    endpoint = Endpoint([PermanentError("HTTP 422"), TransientError("HTTP 503"), TransientError("HTTP 503")])
    adapter = ResilientAdapter(endpoint, b, None)
    message = Message(message_id="m1", body={})
    for _ in range(3):
        with pytest.raises((PermanentError, TransientError)):
            adapter.call("post", message, idempotency_key="k")
    assert b.state == OPEN
    with pytest.raises(CircuitOpen):
        adapter.call("post", message, idempotency_key="k")
    assert endpoint.calls == 3


def spec(**settings):
    return AdapterSpec("ledger", "rest", "adapters/ledger.yaml", settings, {})


def test_settings_build_the_breaker_and_bucket_and_bad_ones_name_the_adapter_and_field():
    b = breaker_for(spec(circuit_breaker={"failures": 5, "within": "30s", "open_for": "10s"}))
    assert (b.failures, b.within, b.open_for) == (5, 30.0, 10.0)
    bucket = bucket_for(spec(rate_limit={"per_second": 20, "burst": 40}))
    assert (bucket.rate, bucket.burst, bucket.max_wait) == (20, 40, 5.0)
    assert breaker_for(spec()) is None and bucket_for(spec()) is None
    with pytest.raises(ConfigError, match="adapters/ledger.yaml: the adapter 'ledger': circuit_breaker.failures "
                                          "must be a whole number"):
        breaker_for(spec(circuit_breaker={"failures": 2.5}))
