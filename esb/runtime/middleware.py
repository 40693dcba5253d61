"""The seam around every message: hooks the core calls, middleware that logs, counts or traces.

As in dramatiq, the message core never logs or counts what happens to a message itself: it
calls a hook, and each middleware does its part. Hooks named `after_*`/`on_*` that close a
message run in reverse order of the middleware list, so the first middleware wraps the others.
A middleware overrides only the hooks it needs; a hook nobody overrides costs nothing.

Hooks (`attempt` is the delivery being processed: route, message_id, state, key):

    before_message(attempt)                        the delivery was taken up
    after_step(attempt, step, message)             a step completed
    on_step_failed(attempt, error)                 a step failed (retry or dead letter follows)
    on_forged_state(attempt, headers)              esb headers without esb's seal were dropped
    on_resumed(attempt, step_index)                a redelivery resumes after recorded steps
    on_compensated(attempt, step, error)           a completed step was undone (error: None if ok)
    on_ack(attempt, outputs, filtered)             done: every output confirmed, then acked
    on_skip(attempt, reason)                       a duplicate of a done message, acked unrun
    on_retry(attempt, reason, delay_ms, next_attempt, resume_step)
    on_dead_letter(attempt, step, error_class, compensation, reason)
    on_give_back(attempt, error, pause)            esb could not settle it: requeued after `pause` s
    after_message(attempt, outcome)                outcome: acked, skipped, retried, dead_lettered, given_back

and five that are not about a message: `on_circuit(adapter, state)` (an adapter's circuit breaker
changed: closed, open, half_open), `on_rate_limit_wait(adapter, seconds)` (a call waited for its
adapter's rate limit), `on_reload(result)` (a hot reload was done, refused, or
found nothing to do: esb.runtime.reload.ReloadResult), `on_poll(adapter, inbound, taken, ok)` (an
SFTP inbound poller's round: files published, whether it reached the end), and
`wrap_adapter(name, kind, adapter)`, which returns the adapter (or a wrapper of it with the same
`call`/`close`) the routes will use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import structlog

HOOKS = ("before_message", "after_step", "on_step_failed", "on_forged_state", "on_resumed", "on_compensated",
         "on_ack", "on_skip", "on_retry", "on_dead_letter", "on_give_back", "after_message", "on_reload",
         "on_poll", "on_circuit", "on_rate_limit_wait")
_REVERSED = {"on_ack", "on_skip", "on_retry", "on_dead_letter", "on_give_back", "after_message"}


class Middleware:
    """Override the hooks you need; each is called with the attempt and keyword facts."""


class Hooks:
    """The middleware of a runtime, as one callable per hook: `hooks.on_ack(attempt, outputs=1, ...)`."""

    def __init__(self, middleware: Sequence[Middleware] = ()):
        self.middleware = tuple(middleware)
        for name in HOOKS:
            calls = [getattr(m, name) for m in self.middleware if callable(getattr(m, name, None))]
            if name in _REVERSED:
                calls.reverse()
            setattr(self, name, _fan_out(name, calls))
        self.wants_steps = any(callable(getattr(m, "after_step", None)) for m in self.middleware)
        wrappers = [m.wrap_adapter for m in self.middleware if callable(getattr(m, "wrap_adapter", None))]
        self.wrap_adapter = _wrapping(wrappers) if wrappers else None


def _wrapping(wrappers: list[Callable]) -> Callable:
    def wrap(name: str, kind: str, adapter: Any) -> Any:
        for wrapper in wrappers:
            adapter = wrapper(name, kind, adapter)
        return adapter
    return wrap


def _fan_out(name: str, calls: list[Callable[..., None]]) -> Callable[..., None]:
    """One callable for the hook: each middleware's method in turn, a failing one logged and
    passed over. Made once per runtime; it runs several times for every message."""
    if not calls:
        return _nothing
    calls = tuple(calls)

    def every(*args: Any, **facts: Any) -> None:
        for call in calls:
            try:
                call(*args, **facts)
            except Exception:  # noqa: BLE001 - a middleware's bug must never decide a message's fate
                structlog.get_logger("esb.middleware").exception("middleware_failed", hook=name)
    return every


def _nothing(*_args: Any, **_facts: Any) -> None:
    return None


class LogMiddleware(Middleware):
    """One structlog line per fact of a message, each with its route, message id and step."""

    def __init__(self, logger=None):
        self._logger = logger or structlog.get_logger("esb.worker")
        self._bound: tuple = (None, None)  # (structlog's configuration, the logger bound under it)

    @property
    def log(self):
        """The logger, bound once per configuration of structlog: structlog's lazy proxy binds a
        new one at every call (3 µs, for the message_acked line of every message, shown or not)."""
        config = structlog.get_config()
        key = (config["wrapper_class"], config["logger_factory"], config["context_class"],
               id(config["processors"]))
        made_for, bound = self._bound
        if made_for != key:
            bound = self._logger.bind()
            self._bound = (key, bound)
        return bound

    def _of(self, attempt):
        return self.log.bind(route=attempt.route, message_id=attempt.message_id, attempt=attempt.state.attempt)

    def on_forged_state(self, attempt, headers):
        self._of(attempt).warning("forged_state_dropped", headers=sorted(headers),
                                  hint="esb headers without esb's seal: the message runs from its first step")

    def on_resumed(self, attempt, step_index):
        self._of(attempt).info("resumed_after_crash", step_index=step_index)

    def on_step_failed(self, attempt, error):
        self._of(attempt).warning("step_failed", step=error.step, error_class=error.error_class,
                                  error=short(str(error)))

    def on_compensated(self, attempt, step, error):
        if error is None:
            self._of(attempt).info("compensated", compensated_step=step)
        else:
            self._of(attempt).error("compensation_failed", compensated_step=step, error=short(str(error)))

    def on_ack(self, attempt, outputs, filtered):
        self.log.info("message_acked", route=attempt.route, message_id=attempt.message_id, outputs=outputs,
                      filtered=filtered)

    def on_skip(self, attempt, reason):
        self._of(attempt).info("duplicate_skipped", key=attempt.key, reason=reason)

    def on_retry(self, attempt, reason, delay_ms, next_attempt, resume_step):
        self._of(attempt).info("retry_scheduled", reason=reason, delay_ms=delay_ms, next_attempt=next_attempt,
                               resume_step=resume_step)

    def on_dead_letter(self, attempt, step, error_class, compensation, reason):
        self._of(attempt).warning("dead_lettered", step=step, error_class=error_class, compensation=compensation,
                                  reason=reason)

    def on_give_back(self, attempt, error, pause):
        if getattr(error, "error_class", None) == "circuit_open":  # not a fault of esb: it waits
            return self._of(attempt).info("waiting_for_circuit", error=short(str(error)), requeue_in_s=pause)
        self._of(attempt).error("delivery_not_settled", error=f"{type(error).__name__}: {short(str(error))}",
                                requeue_in_s=pause)


    def on_circuit(self, adapter, state):
        if state == "closed":
            self.log.info("circuit_closed", adapter=adapter)
        else:
            self.log.warning(f"circuit_{state}", adapter=adapter)


MAX_REASON = 1024


def short(text: str) -> str:
    """Dead letters and logs get at most 1 KB of reason; adapters already keep secrets out."""
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"
