"""Prometheus metrics of the message core, counted by a middleware on the runtime's seam.

Route, step, tier and error class are labels; message ids never are (one series per message
would grow without bound). Under `esb run --workers N` each worker writes its values to files in
PROMETHEUS_MULTIPROC_DIR (set by the supervisor before the worker starts) and the supervisor
serves them summed, so one endpoint covers every process.
"""

from __future__ import annotations

import re
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from esb.runtime.middleware import Middleware

# End-to-end and step times: a pure step takes tens of µs, a `to` up to its timeout.
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RECEIVED = Counter("esb_messages_received_total", "Deliveries a route took up", ["route"])
ACKED = Counter("esb_messages_acked_total", "Messages done: every output confirmed, then acked", ["route"])
FILTERED = Counter("esb_messages_filtered_total", "Acked messages a filter stopped before any output", ["route"])
SKIPPED = Counter("esb_messages_duplicates_skipped_total", "Duplicates of a done message, acked unrun",
                  ["route"])
RETRIED = Counter("esb_messages_retried_total", "Messages sent to a delay tier", ["route", "tier"])
DEAD = Counter("esb_messages_dead_lettered_total", "Messages dead-lettered", ["route", "error_class"])
GIVEN_BACK = Counter("esb_messages_given_back_total", "Deliveries esb could not settle and requeued", ["route"])
FORGED = Counter("esb_forged_state_dropped_total", "Deliveries whose esb headers lacked esb's seal", ["route"])
IN_FLIGHT = Gauge("esb_messages_in_flight", "Deliveries taken up and not yet settled", ["route"],
                  multiprocess_mode="livesum")
DURATION = Histogram("esb_message_duration_seconds", "From taking a delivery up to settling it",
                     ["route", "outcome"], buckets=SECONDS)
STEP_DURATION = Histogram("esb_step_duration_seconds", "Time of one step that completed", ["route", "step"],
                          buckets=SECONDS)
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


class MetricsMiddleware(Middleware):
    """Counts every fact of a message; times each step from the end of the one before it."""

    def __init__(self):
        self._config_hash = ""
        # The series of every message, found once per route (or step): `labels()` takes a lock and
        # builds a key each time, which was most of the middleware's cost per message.
        self._route: dict[str, _RouteSeries] = {}
        self._steps: dict[tuple[str, str], Any] = {}

    def _series(self, route: str) -> _RouteSeries:
        found = self._route.get(route)
        if found is None:
            found = self._route[route] = _RouteSeries(route)
        return found

    def before_message(self, attempt):
        series = self._series(attempt.route)
        series.received.inc()
        series.in_flight.inc()
        now = time.perf_counter()
        attempt.marks = [now, now]  # taken up, last step ended

    def after_step(self, attempt, step, message):
        now = time.perf_counter()
        key = (attempt.route, step.label)
        child = self._steps.get(key)
        if child is None:
            child = self._steps[key] = STEP_DURATION.labels(*key)
        child.observe(now - attempt.marks[1])
        attempt.marks[1] = now

    def on_step_failed(self, attempt, error):
        STEP_FAILURES.labels(attempt.route, error.step or "", error.error_class).inc()

    def on_forged_state(self, attempt, headers):
        FORGED.labels(attempt.route).inc()

    def on_compensated(self, attempt, step, error):
        COMPENSATIONS.labels(attempt.route, step, "ok" if error is None else "failed").inc()

    def on_ack(self, attempt, outputs, filtered):
        self._series(attempt.route).acked.inc()
        if filtered:
            FILTERED.labels(attempt.route).inc()

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
        series = self._series(attempt.route)
        series.in_flight.dec()
        if attempt.marks is not None:
            duration = series.acked_duration if outcome == "acked" else DURATION.labels(attempt.route, outcome)
            duration.observe(time.perf_counter() - attempt.marks[0])


class _RouteSeries:
    """The series a route touches for every message."""

    __slots__ = ("received", "in_flight", "acked", "acked_duration")

    def __init__(self, route: str):
        self.received, self.in_flight = RECEIVED.labels(route), IN_FLIGHT.labels(route)
        self.acked, self.acked_duration = ACKED.labels(route), DURATION.labels(route, "acked")


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
