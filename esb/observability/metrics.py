"""Prometheus metrics of the message core, counted by a middleware on the runtime's seam.

Route, step, tier and error class are labels; message ids never are (one series per message
would grow without bound). Under `esb run --workers N` each worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR (set by the supervisor before the worker starts) and the supervisor
serves them summed, so one endpoint covers every process.

The series every message touches (received, acked, filtered, in flight, message and step
durations) are counted in plain Python under one lock and added to prometheus_client's series by
`flush()`: a prometheus_client `inc` or `observe` takes a lock of its own per call, and under
`--workers N` writes an mmap'd file, which was most of a message's bookkeeping. A scrape of this
process flushes first, so what it shows is exact. Under a supervisor the scrape reads the files,
so each worker flushes every FLUSH_EVERY second and once more at exit: the supervisor's
/metrics lags a worker by up to a second (esb_messages_in_flight included), and a worker killed
outright loses at most its last second of counts.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
import time
from bisect import bisect_left

import structlog
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

from esb.observability import MULTIPROC_ENV
from esb.runtime.middleware import Middleware

FLUSH_EVERY = 1.0  # seconds between a worker's flushes under a supervisor
log = structlog.get_logger("esb.metrics")

# End-to-end and step times: a pure step takes tens of µs, a `to` up to its timeout.
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# Counted per message: registered below through _Flushed, which flushes before they are collected.
RECEIVED = Counter("esb_messages_received_total", "Deliveries a route took up", ["route"], registry=None)
ACKED = Counter("esb_messages_acked_total", "Messages done: every output confirmed, then acked", ["route"],
                registry=None)
FILTERED = Counter("esb_messages_filtered_total", "Acked messages a filter stopped before any output", ["route"],
                   registry=None)
IN_FLIGHT = Gauge("esb_messages_in_flight", "Deliveries taken up and not yet settled", ["route"],
                  multiprocess_mode="livesum", registry=None)
DURATION = Histogram("esb_message_duration_seconds", "From taking a delivery up to settling it",
                     ["route", "outcome"], buckets=SECONDS, registry=None)
STEP_DURATION = Histogram("esb_step_duration_seconds", "Time of one step that completed", ["route", "step"],
                          buckets=SECONDS, registry=None)
SKIPPED = Counter("esb_messages_duplicates_skipped_total", "Duplicates of a done message, acked unrun",
                  ["route"])
RETRIED = Counter("esb_messages_retried_total", "Messages sent to a delay tier", ["route", "tier"])
DEAD = Counter("esb_messages_dead_lettered_total", "Messages dead-lettered", ["route", "error_class"])
GIVEN_BACK = Counter("esb_messages_given_back_total", "Deliveries esb could not settle and requeued", ["route"])
FORGED = Counter("esb_forged_state_dropped_total", "Deliveries whose esb headers lacked esb's seal", ["route"])
STEP_FAILURES = Counter("esb_step_failures_total", "Steps that failed", ["route", "step", "error_class"])
ADAPTER_CALLS = Counter("esb_adapter_calls_total", "Calls of an adapter's operation, by outcome",
                        ["adapter", "kind", "operation", "outcome"])
ADAPTER_DURATION = Histogram("esb_adapter_call_duration_seconds", "Time of one adapter call, failed or not",
                             ["adapter", "kind", "operation"], buckets=SECONDS)
POLLS = Counter("esb_sftp_polls_total", "Rounds of an SFTP inbound poller, by outcome (ok, failed)",
                ["adapter", "inbound", "outcome"])
FILES_TAKEN = Counter("esb_sftp_files_taken_total", "Files an SFTP inbound poller published", ["adapter", "inbound"])
LAST_POLL = Gauge("esb_sftp_last_successful_poll_timestamp_seconds", "When a poller's last round reached its end",
                  ["adapter", "inbound"], multiprocess_mode="livemax")
RELOADS = Counter("esb_config_reloads_total", "Hot reloads by outcome: reloaded, refused (the running routes "
                  "kept), unchanged", ["outcome"])
RELOAD_PROBLEMS = Gauge("esb_config_reload_problems", "Problems of the last reload attempt (0: it loaded)",
                        multiprocess_mode="livemax")
CONFIG_INFO = Gauge("esb_config_info", "1 for the hash of the configuration the routes run on", ["config_hash"],
                    multiprocess_mode="livemax")
CIRCUIT_STATE = Gauge("esb_adapter_circuit_state", "An adapter's circuit breaker: 0 closed, 1 open, 2 half-open",
                      ["adapter"], multiprocess_mode="livemax")
RATE_LIMIT_WAITS = Counter("esb_adapter_rate_limit_waits_total", "Calls that waited for their adapter's rate limit",
                           ["adapter"])
RATE_LIMIT_WAITED = Counter("esb_adapter_rate_limit_wait_seconds_total", "Time calls waited for their adapter's "
                            "rate limit", ["adapter"])
COMPENSATIONS = Counter("esb_compensations_total", "Completed steps undone", ["route", "step", "outcome"])


_LOCK = threading.Lock()  # guards every count not yet flushed (hooks run on several lanes' threads)
_FLUSHING = threading.Lock()  # one flush at a time: a scrape waits for one under way to add its counts


class _Count:
    """What a counter or gauge series gained since the last flush (a gauge's may be negative)."""

    __slots__ = ("series", "n")

    def __init__(self, series):
        self.series, self.n = series, 0

    def parts(self):
        return (self,)

    def take(self):
        n, self.n = self.n, 0
        return n

    def add(self, n) -> None:
        self.series.inc(n)


class _Observed:
    """What a histogram series observed since the last flush: a count per bucket (as the series
    keeps them, not cumulative; the last is +Inf) and their sum."""

    __slots__ = ("series", "counts", "sum")

    def __init__(self, series):
        self.series, self.counts, self.sum = series, [0] * (len(SECONDS) + 1), 0.0

    def parts(self):
        return (self,)

    def observe(self, seconds: float) -> None:  # with _LOCK held
        self.counts[bisect_left(SECONDS, seconds)] += 1  # the first bucket with seconds <= its bound
        self.sum += seconds

    def take(self):
        if not any(self.counts):
            return None
        taken, self.counts, self.sum = (self.counts, self.sum), [0] * (len(SECONDS) + 1), 0.0
        return taken

    def add(self, taken) -> None:
        """All at once: prometheus_client's Histogram has no call for that, so its values (one per
        bucket, and the sum: prometheus_client 0.2x's `_buckets` and `_sum`) are added to directly.
        tests/unit/observability/test_metrics.py shows the result is what `observe` gives."""
        counts, total = taken
        for value, n in zip(self.series._buckets, counts, strict=True):  # noqa: SLF001
            if n:
                value.inc(n)
        self.series._sum.inc(total)  # noqa: SLF001


_PENDING: list[_Count | _Observed] = []  # every series counted here, in the order first seen
_ROUTES: dict[str, _RouteSeries] = {}
_FILTERED: dict[str, _Count] = {}  # made at a route's first filtered message: a route that never filters shows none
_STEPS: dict[tuple[str, str], _Observed] = {}  # (route, step)
_DURATIONS: dict[tuple[str, str], _Observed] = {}  # (route, outcome)


def _made(found: dict, key, make):
    """found[key], made the first time (and flushed from then on)."""
    made = found.get(key)
    if made is not None:  # every message but a route's first: no lock
        return made
    with _LOCK:
        made = found.get(key)
        if made is None:
            made = found[key] = make(key)
            _PENDING.extend(made.parts())
    return made


def flush() -> None:
    """Adds what the hooks counted since the last flush to prometheus_client's series (the hooks
    wait only while the counts are taken, not while they are added)."""
    with _FLUSHING:
        with _LOCK:
            taken = [(pending, pending.take()) for pending in _PENDING]
        for pending, amount in taken:
            if amount:
                pending.add(amount)


class _Flushed(Collector):
    """The series counted per message, collected after a flush: a scrape sees every message so far."""

    def __init__(self, *metrics):
        self.metrics = metrics

    def describe(self):
        return [family for metric in self.metrics for family in metric.describe()]

    def collect(self):
        flush()
        return [family for metric in self.metrics for family in metric.collect()]


REGISTRY.register(_Flushed(RECEIVED, ACKED, FILTERED, IN_FLIGHT, DURATION, STEP_DURATION))
_flusher: threading.Thread | None = None


def _flush_every(seconds: float) -> None:
    while True:
        time.sleep(seconds)
        try:
            flush()
        except Exception:  # noqa: BLE001 - counting must go on: said, and tried again next time
            log.exception("metrics_flush_failed")


def _start_flushing() -> None:
    """Under a supervisor, which reads the files the series write: a flush every FLUSH_EVERY
    second, and a last one when the worker exits."""
    global _flusher  # noqa: PLW0603 - one per process, as the series are
    with _LOCK:
        if _flusher is not None:
            return
        _flusher = threading.Thread(target=_flush_every, args=(FLUSH_EVERY,), name="esb-metrics-flush", daemon=True)
    _flusher.start()
    atexit.register(flush)


class MetricsMiddleware(Middleware):
    """Counts every fact of a message; times each step from the end of the one before it."""

    def __init__(self):
        self._config_hash = ""
        if os.environ.get(MULTIPROC_ENV):
            _start_flushing()

    def before_message(self, attempt):
        series = _made(_ROUTES, attempt.route, _RouteSeries)
        with _LOCK:
            series.received.n += 1
            series.in_flight.n += 1
        now = time.perf_counter()
        attempt.marks = [now, now]  # taken up, last step ended

    def after_step(self, attempt, step, message):
        now = time.perf_counter()
        key = (attempt.route, step.label)
        observed = _made(_STEPS, key, _step_times)
        with _LOCK:
            observed.observe(now - attempt.marks[1])
        attempt.marks[1] = now

    def on_step_failed(self, attempt, error):
        STEP_FAILURES.labels(attempt.route, error.step or "", error.error_class).inc()

    def on_forged_state(self, attempt, headers):
        FORGED.labels(attempt.route).inc()

    def on_compensated(self, attempt, step, error):
        COMPENSATIONS.labels(attempt.route, step, "ok" if error is None else "failed").inc()

    def on_ack(self, attempt, outputs, filtered):
        series = _made(_ROUTES, attempt.route, _RouteSeries)
        filtered = filtered and _made(_FILTERED, attempt.route, _filtered)
        with _LOCK:
            series.acked.n += 1
            if filtered:
                filtered.n += 1

    def on_skip(self, attempt, reason):
        SKIPPED.labels(attempt.route).inc()

    def on_retry(self, attempt, reason, delay_ms, next_attempt, resume_step):
        RETRIED.labels(attempt.route, tier(delay_ms)).inc()

    def on_dead_letter(self, attempt, step, error_class, compensation, reason):
        DEAD.labels(attempt.route, error_class).inc()

    def on_give_back(self, attempt, error, pause):
        GIVEN_BACK.labels(attempt.route).inc()

    def on_poll(self, adapter, inbound, taken, ok):
        POLLS.labels(adapter, inbound, "ok" if ok else "failed").inc()
        if taken:
            FILES_TAKEN.labels(adapter, inbound).inc(taken)
        if ok:
            LAST_POLL.labels(adapter, inbound).set_to_current_time()

    def on_reload(self, result):
        RELOADS.labels(result.outcome).inc()
        RELOAD_PROBLEMS.set(len(result.errors))  # 0 again once a refused change is fixed or undone
        if result.outcome in ("loaded", "reloaded"):
            if self._config_hash:  # set to 0, not removed: under --workers N the value lives in a file
                CONFIG_INFO.labels(self._config_hash).set(0)
            CONFIG_INFO.labels(result.config_hash).set(1)
            self._config_hash = result.config_hash

    def on_circuit(self, adapter, state):
        from esb.adapters.resilience import STATE_VALUES
        CIRCUIT_STATE.labels(adapter).set(STATE_VALUES[state])

    def on_rate_limit_wait(self, adapter, seconds):
        RATE_LIMIT_WAITS.labels(adapter).inc()
        RATE_LIMIT_WAITED.labels(adapter).inc(seconds)

    def wrap_adapter(self, name, kind, adapter):
        return TimedAdapter(name, kind, adapter)

    def after_message(self, attempt, outcome):
        series = _made(_ROUTES, attempt.route, _RouteSeries)
        if attempt.marks is None:
            with _LOCK:
                series.in_flight.n -= 1
            return
        key = (attempt.route, outcome)
        observed = _made(_DURATIONS, key, _message_times)
        seconds = time.perf_counter() - attempt.marks[0]
        with _LOCK:
            series.in_flight.n -= 1
            observed.observe(seconds)


class _RouteSeries:
    """The counts of a route's every message."""

    __slots__ = ("received", "in_flight", "acked")

    def __init__(self, route: str):
        self.received, self.in_flight = _Count(RECEIVED.labels(route)), _Count(IN_FLIGHT.labels(route))
        self.acked = _Count(ACKED.labels(route))

    def parts(self):
        return (self.received, self.in_flight, self.acked)


def _filtered(route: str) -> _Count:
    return _Count(FILTERED.labels(route))


def _step_times(key: tuple[str, str]) -> _Observed:
    return _Observed(STEP_DURATION.labels(*key))


def _message_times(key: tuple[str, str]) -> _Observed:
    return _Observed(DURATION.labels(*key))


def tier(delay_ms: int) -> str:
    """A delay tier as a bounded label: the retry policy's delays, written like 2s or 15m."""
    seconds = delay_ms / 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


_HTTP_STATUS = re.compile(r"\bHTTP (\d)\d\d\b")


class TimedAdapter:
    """An adapter whose calls are counted by outcome (ok, or the HTTP status class or error class
    of the failure) and timed."""

    def __init__(self, name: str, kind: str, adapter):
        self.name, self.kind, self.adapter = name, kind, adapter

    def call(self, operation, message, *, idempotency_key):
        started = time.perf_counter()
        outcome = "ok"
        try:
            return self.adapter.call(operation, message, idempotency_key=idempotency_key)
        except Exception as exc:
            outcome = failure_outcome(exc)
            raise
        finally:
            ADAPTER_DURATION.labels(self.name, self.kind, operation).observe(time.perf_counter() - started)
            ADAPTER_CALLS.labels(self.name, self.kind, operation, outcome).inc()

    def close(self) -> None:
        self.adapter.close()

    def __getattr__(self, name):  # anything else an adapter offers (e.g. the SFTP poller's reads)
        return getattr(self.adapter, name)


def failure_outcome(error: Exception) -> str:
    """`http_5xx` when the error names an HTTP status (the REST adapter's do), else its error class
    (`transient`; a SOAP fault is `permanent`)."""
    found = _HTTP_STATUS.search(str(error))
    if found:
        return f"http_{found.group(1)}xx"
    return getattr(error, "error_class", None) or type(error).__name__
