"""Per-adapter rate limit and circuit breaker, as a wrapper with the adapter's own `call`/`close`.

    rate_limit:      {per_second: 20, burst: 40, max_wait: 5s}
    circuit_breaker: {failures: 5, within: 30s, open_for: 10s}

The token bucket is shared by every thread of the process: a call waits for a token at most
`max_wait`, else fails with a TransientError (retried like any other). The breaker opens after
`failures` transient failures (timeouts, connection errors, 5xx, 429) within `within`; while open,
calls fail at once with CircuitOpen, which carries the time left. After `open_for` it turns
half-open by itself (a timer) and tells its listeners, so the routes calling it consume again; the
first call is the trial: success closes it, a transient failure opens it again.

Our own ~80 lines rather than pybreaker: pybreaker counts consecutive failures (no time window),
turns half-open only lazily on the next call (nobody would be told to resume consuming), and its
error does not say how long the breaker stays open.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from esb.adapters.spec import AdapterSpec, positive_seconds
from esb.errors import ConfigError, TransientError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}
TRIAL_RETRY_AFTER = 1.0  # a call while the half-open trial runs is told to come back after this


class CircuitOpen(TransientError):
    """The adapter's circuit breaker is open: nothing was sent. Not a failure of the message —
    the runtime holds it (without counting an attempt) until the breaker lets calls through."""

    error_class = "circuit_open"

    def __init__(self, adapter: str, retry_after: float):
        super().__init__(f"the circuit breaker of the adapter '{adapter}' is open (the endpoint failed "
                         f"repeatedly); calls resume in {retry_after:.1f}s", retry_after=retry_after)
        self.adapter = adapter


def _schedule(delay: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()


class TokenBucket:
    """`per_second` tokens a second, at most `burst` saved up; thread-safe. A caller reserves its
    token under the lock and sleeps outside it, so waiters are served in order."""

    def __init__(self, adapter: str, per_second: float, burst: int, max_wait: float,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.adapter, self.rate, self.burst, self.max_wait = adapter, per_second, burst, max_wait
        self.clock, self.sleep = clock, sleep
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token; return the seconds waited for it."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            wait = max(0.0, (1 - self._tokens) / self.rate)
            if wait > self.max_wait:
                raise TransientError(f"the rate limit of the adapter '{self.adapter}' ({self.rate:g}/s) would "
                                     f"hold this call {wait:.1f}s, more than max_wait {self.max_wait:g}s",
                                     retry_after=wait)
            self._tokens -= 1
        if wait:
            self.sleep(wait)
        return wait


class CircuitBreaker:
    """closed → open after `failures` transient failures within `within` s; open → half-open after
    `open_for` s; half-open → closed on the trial's success, open again on its failure.
    Listeners are called `listener(adapter, state)` on every change, outside the lock."""

    def __init__(self, adapter: str, failures: int, within: float, open_for: float,
                 clock: Callable[[], float] = time.monotonic, schedule: Callable = _schedule):
        self.adapter, self.failures, self.within, self.open_for = adapter, failures, within, open_for
        self.clock, self.schedule = clock, schedule
        self.state = CLOSED
        self._failed_at: collections.deque[float] = collections.deque()
        self._open_until = 0.0
        self._trial = False
        self._listeners: list[Callable[[str, str], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Callable[[str, str], None]) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[str, str], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def before_call(self) -> None:
        """Let the call through, or raise CircuitOpen."""
        with self._lock:
            if self.state == OPEN:
                raise CircuitOpen(self.adapter, max(0.0, self._open_until - self.clock()))
            if self.state == HALF_OPEN:
                if self._trial:
                    raise CircuitOpen(self.adapter, TRIAL_RETRY_AFTER)
                self._trial = True

    def succeeded(self) -> None:
        with self._lock:
            if self.state != HALF_OPEN:
                return  # closed: nothing to do; open: a call sent before it opened
            self._trial = False
            self._failed_at.clear()
            self.state = CLOSED
        self._notify(CLOSED)

    def failed(self) -> None:
        with self._lock:
            now = self.clock()
            if self.state == OPEN:
                return
            if self.state == CLOSED:
                self._failed_at.append(now)
                while self._failed_at and self._failed_at[0] <= now - self.within:
                    self._failed_at.popleft()
                if len(self._failed_at) < self.failures:
                    return
            self._trial = False
            self._failed_at.clear()
            self.state, self._open_until = OPEN, now + self.open_for
        self.schedule(self.open_for, self._half_open)
        self._notify(OPEN)

    def _half_open(self) -> None:
        with self._lock:
            if self.state != OPEN or self.clock() < self._open_until:
                return
            self.state = HALF_OPEN
        self._notify(HALF_OPEN)

    def _notify(self, state: str) -> None:
        for listener in list(self._listeners):
            listener(self.adapter, state)


class ResilientAdapter:
    """An adapter behind its rate limit and circuit breaker (either may be None)."""

    def __init__(self, adapter: Any, breaker: CircuitBreaker | None, bucket: TokenBucket | None,
                 on_wait: Callable[[str, float], None] | None = None):
        self.adapter, self.breaker, self.bucket, self.on_wait = adapter, breaker, bucket, on_wait

    def call(self, operation, message, *, idempotency_key):
        if self.bucket is not None:
            waited = self.bucket.take()
            if waited and self.on_wait is not None:
                self.on_wait(self.bucket.adapter, waited)
        if self.breaker is None:
            return self.adapter.call(operation, message, idempotency_key=idempotency_key)
        self.breaker.before_call()
        try:
            result = self.adapter.call(operation, message, idempotency_key=idempotency_key)
        except TransientError:
            self.breaker.failed()
            raise
        except BaseException:
            self.breaker.succeeded()  # the endpoint answered (4xx) or esb failed: not an outage
            raise
        self.breaker.succeeded()
        return result

    def close(self) -> None:
        self.adapter.close()

    def __getattr__(self, name):  # anything else an adapter offers (e.g. the SFTP poller's reads)
        return getattr(self.adapter, name)


def breaker_for(spec: AdapterSpec) -> CircuitBreaker | None:
    """The breaker an adapter's `circuit_breaker:` setting asks for, or None."""
    setting = spec.settings.get("circuit_breaker")
    if not setting:
        return None
    return CircuitBreaker(spec.name, _whole(spec, "circuit_breaker.failures", setting.get("failures", 5)),
                          positive_seconds(spec, "circuit_breaker.within", setting.get("within"), 30.0),
                          positive_seconds(spec, "circuit_breaker.open_for", setting.get("open_for"), 10.0))


def bucket_for(spec: AdapterSpec) -> TokenBucket | None:
    """The token bucket an adapter's `rate_limit:` setting asks for, or None."""
    setting = spec.settings.get("rate_limit")
    if not setting:
        return None
    per_second = _number(spec, "rate_limit.per_second", setting.get("per_second"))
    burst = _whole(spec, "rate_limit.burst", setting.get("burst", max(1, int(per_second))))
    return TokenBucket(spec.name, per_second, burst,
                       positive_seconds(spec, "rate_limit.max_wait", setting.get("max_wait"), 5.0))


def _number(spec: AdapterSpec, key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0.0
    if number <= 0:
        raise ConfigError(f"the adapter '{spec.name}': {key} must be a number above 0, not {value!r}",
                          path=spec.path)
    return number


def _whole(spec: AdapterSpec, key: str, value: Any) -> int:
    number = _number(spec, key, value)
    if number != int(number):
        raise ConfigError(f"the adapter '{spec.name}': {key} must be a whole number, not {value!r}", path=spec.path)
    return int(number)
