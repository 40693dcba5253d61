"""Run one route on a broker: consume, process, confirm outputs, then ack.

For each delivery: idempotency claim → steps (resuming at the failing step of a retried
message) → every publish confirmed → record done → ack. A transient failure goes to a delay
tier with the message's state; a permanent one (or retries exhausted) runs the compensations
of completed steps in reverse, then dead-letters the original message with why it died.
Nothing is acked before what replaces it (outputs, retry state, dead letter) is confirmed.

Where steps run: a route with a step that may wait on the outside world (`to`, `function`) or
on the idempotency store runs on `concurrency` threads of its own, never on the broker's I/O
thread, so a slow endpoint cannot stall acks and confirms. A route that cannot block runs on
the broker's thread (handing each message to a thread and back cost more than the work; see
RouteRunner.inline), and only its failures, which wait for confirms, move to a thread. Nobody
waits for the confirms of a message's outputs: the last confirm acks it (with a store, hands it
to the route's Finisher, which records it done together with others, then acks), so confirms
are pipelined across messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
import tenacity

from esb.errors import PermanentError, ProcessingError, TransientError
from esb.message import Message
from esb.routes.model import Route
from esb.runtime import names
from esb.runtime.broker import Broker, Confirmation, Delivery, wait_all
from esb.runtime.envelope import (
    RetryState,
    decode_body,
    encode_body,
    read_state,
    state_headers,
    to_message,
    to_outgoing,
    user_headers,
    wire_headers,
)
from esb.runtime.finisher import Finisher
from esb.runtime.topology import retry_delays_ms
from esb.steps.base import Step
from esb.steps.pipeline import StepFailed, run_steps
from esb.transform.expressions import compile_expression

log = structlog.get_logger("esb.worker")
CONFIRM_TIMEOUT = 30.0
LEASE_SECONDS = 120.0
MAX_REASON = 1024
GIVE_BACK_PAUSE = 1.0  # seconds before a delivery esb could not settle is requeued (no hot requeue loop)
IN_PROCESS_RETRY_AFTER_CAP = 2.0  # a longer Retry-After goes to a delay tier instead of blocking a thread


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


@dataclasses.dataclass
class Attempt:
    """One delivery being processed: its state, what it did, what to undo."""

    delivery: Delivery
    state: RetryState
    owner: str = ""  # per delivery: a redelivered copy must not run beside the original
    key: str | None = None
    futures: list = dataclasses.field(default_factory=list)
    compensations: list = dataclasses.field(default_factory=list)

    @property
    def original(self) -> tuple[bytes, str | None, dict]:
        s, d = self.state, self.delivery
        if s.original_body is not None:
            return s.original_body, s.original_content_type, dict(s.original_headers or {})
        return d.body, d.content_type, user_headers(d.headers)


class RuntimeIO:
    """The StepIO of the runtime: adapter calls with quick retries, publishes with confirms."""

    def __init__(self, runner: RouteRunner, attempt: Attempt):
        self.runner, self.attempt = runner, attempt

    def call(self, step: Step, adapter: str, operation: str, message: Message) -> Message:
        impl = self.runner.adapters(adapter)
        key = f"{message.message_id}:{step.label}"
        return self.runner.retrying(impl.call, operation, message, idempotency_key=key)

    def publish(self, step: Step, exchange: str, routing_key: str, message: Message) -> None:
        future = self.runner.broker.publish(exchange, routing_key, to_outgoing(message))
        self.attempt.futures.append((step.label, future))

    def completed(self, step: Step, message: Message) -> None:
        self.attempt.compensations.append({
            "step": step.label, "adapter": step.adapter, "operation": step.compensate,
            "body": encode_body(message.body, message.content_type).decode("utf-8", "replace"),
            "content_type": message.content_type, "message_id": message.message_id})


class RouteRunner:
    def __init__(self, route: Route, broker: Broker, adapters: Callable[[str], Any], store=None,
                 owner: str = "", lease_seconds: float = LEASE_SECONDS):
        self.route, self.broker, self.adapters, self.owner = route, broker, adapters, owner
        self.lease_seconds = lease_seconds
        self.store = store if store is not None and (route.idempotency or _has_calls(route)) else None
        # A route without side effects pays one write per message: no claim, only `done`.
        self.claims = any(step.has_side_effects() for step in route.steps)
        # A route that can neither wait on an endpoint nor on the store runs on the broker's
        # thread: measured on 2 cores (make bench), handing each message to a thread and back
        # cost more than the JSON->XML work itself: 1,133 msg/s that way, 3,372 inline, 4,498 for
        # raw pika. A slow bank endpoint still never stalls the broker's thread: routes with `to`
        # or `function` steps keep their threads.
        self.inline = self.store is None and not any(step.blocking for step in route.walk())
        self.tiers = retry_delays_ms(route)
        # Quick in-process retries of a transient failure, bounded; longer waits go to a tier.
        # Built once: it is thread-safe, and building one per call cost more than the call's own
        # bookkeeping on the I/O route.
        self.retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(route.retry.in_process + 1) | tenacity.stop_any(_long_retry_after),
            wait=_wait, retry=tenacity.retry_if_exception_type(TransientError), reraise=True)
        self.key_expression = compile_expression(route.idempotency.key) \
            if route.idempotency and route.idempotency.key else None
        self.log = log.bind(route=route.name)
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work_loop, name=f"esb-{route.name}-{i}", daemon=True)
                         for i in range(0 if self.inline else route.concurrency)]
        self._inflight = 0
        self._attempt_ids = itertools.count(1)
        self._idle = threading.Condition()
        self._finisher = Finisher(route.name, self.store, self._acked, self._not_finished) \
            if self.store is not None else None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._finisher is not None:
            self._finisher.start()
        for thread in self._threads:
            thread.start()
        self.broker.consume(self.route.source.queue, self.route.concurrency, self._on_delivery)

    def drain(self, timeout: float = 30.0) -> None:
        """Stop consuming and wait until in-flight messages are settled (Ctrl-C, SIGTERM)."""
        if hasattr(self.broker, "cancel"):
            self.broker.cancel(self.route.source.queue)
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0, timeout)
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(timeout)
        if self._finisher is not None:
            self._finisher.stop(timeout)

    def idle(self) -> bool:
        """Nothing waiting in the route's queue and nothing in flight (retry tiers not counted)."""
        depth = self.broker.queue_depth(self.route.source.queue)
        return self._inflight == 0 and (depth is None or depth[0] == 0)

    def _on_delivery(self, delivery: Delivery) -> None:
        """On the broker's thread: count it in flight, then run it here (a route that cannot
        block) or hand it to the route's threads."""
        with self._idle:
            self._inflight += 1
        if self.inline:
            self._handle_inline(delivery)
        else:
            self._work.put(delivery)

    def _work_loop(self) -> None:
        while (delivery := self._work.get()) is not None:
            self._handle_safely(delivery)

    def _handle_safely(self, delivery: Delivery) -> None:
        try:
            if self.handle(delivery) is _PENDING:
                return  # settled later, when the broker has confirmed its outputs
        except Exception as exc:  # noqa: BLE001 - never lose the message: give it back after a pause
            self._give_back(delivery, exc)
        self._settled()

    def _handle_inline(self, delivery: Delivery) -> None:
        try:
            outcome = self.handle(delivery, inline=True)
        except Exception as exc:  # noqa: BLE001 - handed to a thread: the broker's thread never sleeps
            self._work_on(lambda exc=exc: (self._give_back(delivery, exc), self._settled()))
            return
        if outcome is not _PENDING:
            self._settled()

    def _settled(self) -> None:
        with self._idle:
            self._inflight -= 1
            if not self._inflight:  # only drain() waits, and only for zero
                self._idle.notify_all()

    # -- one delivery ---------------------------------------------------------------------

    def handle(self, delivery: Delivery, inline: bool = False) -> object:
        """Process one delivery. `inline` (on the broker's thread) must never block: failures,
        which wait for confirms of retry state or dead letters, move to a thread of their own."""
        attempt = Attempt(delivery, read_state(delivery), f"{self.owner}:{next(self._attempt_ids)}")
        try:
            message = to_message(delivery, self.route.source.format)
            attempt.key = attempt.state.key or self._key(message)
        except ProcessingError as exc:
            return self._then(inline, delivery, lambda exc=exc: self._dead_letter(
                attempt, exc, "receive", attempt.state.resume_step, None, self._log(attempt)))
        start, message = attempt.state.resume_step, message
        attempt.compensations = list(attempt.state.compensations)
        if self.store is not None and not self.claims:
            record = self.store.get(self.route.name, attempt.key)
            if record is not None and record.state == "done":
                self.broker.ack(delivery)
                return self._log(attempt).info("duplicate_skipped", key=attempt.key)
        elif self.store is not None:
            claim = self.store.claim(self.route.name, attempt.key, attempt.owner, self.lease_seconds)
            if claim.status == "done":
                self.broker.ack(delivery)
                return self._log(attempt).info("duplicate_skipped", key=attempt.key)
            if claim.status == "busy":
                return self._delay(attempt, message, start, attempt.state.attempt, self._log(attempt), reason="busy")
            if claim.progress and claim.progress[-1].index >= start:
                start, message = self._resume_point(claim.progress, message, attempt)
        io = RuntimeIO(self, attempt)
        try:
            result = run_steps(self.route.steps, message, io, start, self._recorder(attempt, io))
        except StepFailed as failed:
            return self._then(inline, delivery, lambda failed=failed: self._failed(attempt, failed, self._log(attempt)))
        except PermanentError as exc:  # the broker returned an output a step recorded: nothing is bound for it
            return self._dead_letter(attempt, exc, exc.step, start, None, self._log(attempt))
        except TransientError as exc:  # an output a step recorded was not confirmed: give the message back
            raise RuntimeError(f"an output was not confirmed: {exc}") from exc
        if self._finisher is not None:  # `done` is written (with others) once the outputs are confirmed
            outcome = {"dropped": result is None}
            return self._when_confirmed(attempt, start, lambda: self._finisher.finish(
                delivery, attempt.key, attempt.owner, outcome))
        return self._when_confirmed(attempt, start, lambda: self._acked(
            delivery, outputs=len(attempt.futures), filtered=result is None))

    def _log(self, attempt: Attempt):
        """The log of one delivery: bound only when there is something to say (not per message)."""
        return self.log.bind(message_id=attempt.delivery.message_id, attempt=attempt.state.attempt)

    def _then(self, inline: bool, delivery: Delivery, work: Callable[[], None]) -> object:
        """Do `work` now, or (inline) on a thread of its own that settles the delivery after it."""
        if not inline:
            return work()

        def run() -> None:
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - never lose the message
                self._give_back(delivery, exc)
            self._settled()
        self._work_on(run)
        return _PENDING

    def _give_back(self, delivery: Delivery, exc: Exception) -> None:
        """Something esb itself could not do (a confirm that never came): requeue after a pause."""
        self._give_back_all([(delivery, exc)])

    def _give_back_all(self, failed: list[tuple[Delivery, Exception]]) -> None:
        """Requeue each delivery after one pause, not one pause per delivery."""
        for delivery, exc in failed:
            self.log.error("delivery_not_settled", message_id=delivery.message_id, error=f"{type(exc).__name__}: {exc}")
        time.sleep(GIVE_BACK_PAUSE)
        for delivery, _ in failed:
            self.broker.reject(delivery, requeue=True)

    def _not_finished(self, failed: list[tuple[Delivery, Exception]]) -> None:
        """The Finisher could not record these done (lease lost, store down): give them back."""
        self._give_back_all(failed)
        for _ in failed:
            self._settled()

    def _when_confirmed(self, attempt: Attempt, start: int, settle: Callable[[], None]) -> object:
        """`settle` the message once the broker confirmed every output: nobody waits, so confirms
        are pipelined across messages. The last confirm calls it on the broker's thread (so it must
        not block); a refused output sends the message to a thread of its own to be dead-lettered."""
        if not attempt.futures:
            settle()
            return _PENDING
        remaining = [len(attempt.futures)]
        lock = threading.Lock()

        def confirmed(_future: Confirmation) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            if any(f.exception() is not None for _, f in attempt.futures):
                self._work_on(lambda: self._after_refusal(attempt, start))
                return
            settle()
        for _, future in attempt.futures:
            future.add_done_callback(confirmed)
        return _PENDING

    def _acked(self, delivery: Delivery, **facts: Any) -> None:
        self.broker.ack(delivery)
        self.log.info("message_acked", message_id=delivery.message_id, **facts)
        self._settled()  # last: drain() may return, and the process end, right after

    def _work_on(self, task: Callable[[], None]) -> None:
        """Run `task` (which may block) off the broker's thread; it settles the message itself."""
        threading.Thread(target=task, name=f"esb-{self.route.name}-settle", daemon=True).start()

    def _after_refusal(self, attempt: Attempt, start: int) -> None:
        mlog = self.log.bind(message_id=attempt.delivery.message_id, attempt=attempt.state.attempt)
        try:
            try:
                self._confirm(attempt.futures)
            except PermanentError as exc:  # returned: nothing is bound for an output
                self._dead_letter(attempt, exc, exc.step, start, None, mlog)
            except TransientError as exc:
                raise RuntimeError(f"an output was not confirmed: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - never lose the message: give it back after a pause
            self._give_back(attempt.delivery, exc)
        self._settled()

    def _key(self, message: Message) -> str:
        spec = self.route.idempotency
        if spec is None:
            return message.message_id
        value = message.headers.get(spec.header) if spec.header else self.key_expression.search(
            message.body if message.is_json else {}, message.headers)
        if value in (None, ""):
            where = f"header {spec.header}" if spec.header else f"key {spec.key}"
            raise PermanentError(f"the idempotency {where} is missing from the message", step="idempotency")
        return str(value)

    def _resume_point(self, progress, message: Message, attempt: Attempt) -> tuple[int, Message]:
        """A redelivery after a crash: continue after the last side effect the store recorded,
        which may be further than the resume point a retried message carries."""
        last = progress[-1]
        state = last.state
        body = decode_body(state["body"].encode("utf-8"), state["content_type"])
        attempt.compensations = [r.compensation for r in progress if r.compensation]
        restored = Message(body, state["content_type"], state.get("headers", {}), message.message_id)
        self.log.info("resumed_after_crash", message_id=message.message_id, step_index=last.index + 1)
        return last.index + 1, restored

    def _recorder(self, attempt: Attempt, io: RuntimeIO):
        if self.store is None:
            return None

        last = len(self.route.steps) - 1

        def record(index: int, step: Step, message: Message) -> None:
            # Only a step that called out must not run twice; a publish repeated after a crash is
            # at-least-once, and after the last step `done` is written at once anyway.
            if index == last or not _calls_out(step):
                return
            from esb.store import StepRecord
            self._confirm(attempt.futures)  # a recorded publish must really have been sent
            new = [c for c in attempt.compensations if c["step"] == step.label]
            state = {"body": encode_body(message.body, message.content_type).decode("utf-8"),
                     "content_type": message.content_type, "headers": dict(message.headers)}
            self.store.record_step(self.route.name, attempt.key, attempt.owner,
                                   StepRecord(index, step.label, state, new[-1] if new else None))
        return record

    def _confirm(self, futures: list[tuple[str, Confirmation]]) -> None:
        """Wait until the broker confirmed every output; raise the first refusal, naming its step."""
        if not wait_all((f for _, f in futures), CONFIRM_TIMEOUT):
            raise TransientError("the broker did not confirm an output in time")
        for label, future in futures:
            error = future.exception()
            if isinstance(error, ProcessingError):
                raise error.at_step(label)
            if error is not None:
                raise TransientError(f"publish failed: {error}", step=label)

    # -- failures -------------------------------------------------------------------------

    def _failed(self, attempt: Attempt, failed: StepFailed, mlog) -> None:
        error = failed.error
        mlog = mlog.bind(step=error.step)
        mlog.warning("step_failed", error_class=error.error_class, error=_redact(str(error)))
        try:
            self._confirm(attempt.futures)
        except TransientError as exc:
            raise RuntimeError(f"an output was not confirmed: {exc}") from exc
        except PermanentError:
            pass  # the failure being handled is the one to report
        if isinstance(error, TransientError) and attempt.state.attempt < self.route.retry.attempts:
            return self._delay(attempt, failed.message, failed.index, attempt.state.attempt + 1, mlog,
                               retry_after=error.retry_after)
        if isinstance(error, TransientError):
            error = PermanentError(f"retries exhausted after {attempt.state.attempt} attempts: {error}",
                                   step=error.step)
            error.error_class = "retries_exhausted"
        self._dead_letter(attempt, error, error.step, failed.index, failed.message, mlog)

    def _delay(self, attempt: Attempt, message: Message, index: int, next_attempt: int, mlog,
               reason: str = "transient", retry_after: float | None = None) -> None:
        """Send the message's state to a delay tier; the broker brings it back to the route queue."""
        delay = self._tier(next_attempt, retry_after)
        body, content_type, headers = attempt.original
        state = RetryState(next_attempt, index, tuple(attempt.compensations),
                           attempt.state.first_failure or now_iso(), body, content_type or "", headers, attempt.key)
        outgoing = to_outgoing(message, state_headers(state))
        self._confirm([("retry", self.broker.publish("", names.retry_queue(self.route.name, delay), outgoing))])
        if self.store is not None and self.claims and reason != "busy":
            self.store.release(self.route.name, attempt.key, attempt.owner)
        self.broker.ack(attempt.delivery)
        mlog.info("retry_scheduled", reason=reason, delay_ms=delay, next_attempt=next_attempt, resume_step=index)

    def _tier(self, next_attempt: int, retry_after: float | None) -> int:
        base = self.tiers[max(0, min(next_attempt - 2, len(self.tiers) - 1))] if self.tiers else 1000
        if retry_after:  # honour Retry-After: the first tier that waits at least that long
            longer = [t for t in self.tiers if t >= retry_after * 1000]
            return max(base, min(longer)) if longer else max(self.tiers or [base])
        return base

    def _dead_letter(self, attempt: Attempt, error: ProcessingError, step: str | None, index: int,
                     message: Message | None, mlog) -> None:
        compensation = self._compensate(attempt, mlog)
        body, content_type, headers = attempt.original
        first = attempt.state.first_failure or now_iso()
        why = {
            names.DLQ_ROUTE: self.route.name, names.DLQ_STEP: step or "", names.DLQ_ERROR_CLASS: error.error_class,
            names.DLQ_EXCEPTION: type(error).__name__, names.DLQ_REASON: _redact(str(error)),
            names.DLQ_ATTEMPTS: attempt.state.attempt, names.FIRST_FAILURE: first, names.DLQ_LAST_FAILURE: now_iso(),
            names.DLQ_COMPENSATION: compensation, names.RESUME_STEP: index,
        }
        if message is not None:
            why[names.DLQ_STATE_BODY] = encode_body(message.body, message.content_type)
            why[names.DLQ_STATE_CONTENT_TYPE] = message.content_type
        from esb.runtime.broker import Outgoing
        letter = Outgoing(body, content_type or "application/octet-stream", wire_headers({**headers, **why}),
                          attempt.delivery.message_id or "")
        self._confirm([("dead-letter", self.broker.publish("", names.dead_letter_queue(self.route.name), letter))])
        if self.store is not None and self.claims and attempt.key is not None:
            self.store.mark_dead(self.route.name, attempt.key, attempt.owner)
        self.broker.ack(attempt.delivery)
        mlog.warning("dead_lettered", step=step, error_class=error.error_class, compensation=compensation,
                     reason=_redact(str(error)))

    def _compensate(self, attempt: Attempt, mlog) -> str:
        """Undo completed steps in reverse order; say how it went, for the dead letter."""
        if not attempt.compensations:
            return "none"
        failures = []
        for record in reversed(attempt.compensations):
            message = Message(decode_body(record["body"].encode("utf-8"), record["content_type"]),
                              record["content_type"], {}, record["message_id"])
            try:
                self.retrying(self.adapters(record["adapter"]).call, record["operation"], message,
                                idempotency_key=f"{record['message_id']}:{record['step']}:compensate")
                mlog.info("compensated", compensated_step=record["step"])
            except Exception as exc:  # noqa: BLE001 - report every failed compensation, keep going
                failures.append(f"{record['step']}: {_redact(str(exc))}")
                mlog.error("compensation_failed", compensated_step=record["step"], error=_redact(str(exc)))
        return "failed: " + "; ".join(failures) if failures else "ok"


_PENDING = object()  # handle() returns it when the message is settled later, on confirms


def _long_retry_after(state: tenacity.RetryCallState) -> bool:
    exc = state.outcome.exception() if state.outcome else None
    return bool(getattr(exc, "retry_after", None)) and exc.retry_after > IN_PROCESS_RETRY_AFTER_CAP


_backoff = tenacity.wait_exponential(multiplier=0.05, max=1.0)


def _wait(state: tenacity.RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    retry_after = getattr(exc, "retry_after", None)
    return float(retry_after) if retry_after else _backoff(state)


def _calls_out(step: Step) -> bool:
    return step.blocking or any(_calls_out(s) for _, steps in step.branches() for s in steps)


def _has_calls(route: Route) -> bool:
    return any(step.kind == "to" for step in route.walk())


def _redact(text: str) -> str:
    """Dead letters and logs get at most 1 KB of reason; adapters already keep secrets out."""
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"

