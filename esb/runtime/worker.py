"""Run one route on a broker: take a delivery, run its steps, confirm its outputs, settle it once.

For each delivery: size and delivery limits → the sealed retry state (forged state is dropped) →
idempotency claim (resuming after recorded steps) → steps → every publish confirmed → `done`
recorded → ack. A transient failure waits in a delay tier with its state; a permanent one (or
retries exhausted) compensates the completed steps in reverse and is dead-lettered. The Settler
(settlement.py) carries out each of those ends exactly once; hooks (middleware.py) report them.

Where work runs. The broker's thread only routes deliveries: a route that cannot block (no `to`
or `function` step, no store) runs a small delivery right there, since handing each message to a
thread and back cost more than the JSON->XML work itself (measured on 2 cores: 1,133 msg/s handed
off one by one, 3,372 inline, 4,498 raw pika). Its work is bounded: bodies up to INLINE_MAX_BYTES,
conversions linear. Everything else — larger bodies, redeliveries (counted in the store), every
failure (which waits for confirms), routes that call out or use the store — goes to the route's
lanes (lanes.py), so a slow message never stalls heartbeats, acks or other routes. Nobody waits for
the confirms of a message's outputs: the last confirm settles it (with a store, through the
Finisher, which records many messages done at once), so confirms are pipelined across messages.

With a store that writes without waiting (SQLite's group commit), no lane sleeps on a write that
only has to be committed: a first delivery is read and claimed on the broker's thread and its steps
go to a lane once the claim committed, and the record of the route's last call is committed behind
the lane's back, before the `done` (or release, or dead mark) that follows it. A crash in between
redoes the call, as it would while the lane waited for that record. On the bench's I/O route this
took the store from 37 to 25 context switches and from ~1,070 to ~930 µs of CPU a message. The
`done` is committed the same way once the outputs are confirmed, and the commit thread acks.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
import tenacity

from esb.adapters.resilience import OPEN, CircuitOpen
from esb.errors import PermanentError, ProcessingError, TransientError
from esb.loading.config import DEFAULT_MAX_BODY
from esb.message import Message
from esb.routes.model import Route, body_too_large
from esb.runtime import compensation, deadletter, names, retry
from esb.runtime.attempt import Attempt
from esb.runtime.broker import Broker, Confirmation, Delivery
from esb.runtime.envelope import message_id_of, stored_body, to_message, to_outgoing
from esb.runtime.finisher import Finisher
from esb.runtime.keys import store_key
from esb.runtime.lanes import Lanes, Timer
from esb.runtime.middleware import Hooks, LogMiddleware
from esb.runtime.ordering import Partitioner, order_key, partition_names
from esb.runtime.resume import DEFAULT_DELIVERY_LIMIT, DeliveryCounter, resume_point
from esb.runtime.settlement import Settler, confirm
from esb.runtime.state import Seal, carries_state, read_state
from esb.runtime.topology import retry_delays_ms
from esb.steps.base import Step
from esb.steps.pipeline import StepFailed, run_steps
from esb.store import Claim, StepRecord
from esb.transform.expressions import compile_expression

LEASE_SECONDS = 120.0
INLINE_MAX_BYTES = 64 * 1024   # larger bodies of a pure route are converted on a lane, not the broker's thread
PURE_LANES = 2                 # lanes of a route that cannot block: one slow message leaves the other free
MAX_GIVE_BACKS = 10           # give-backs of one message in a row before it is dead-lettered (if it can be)
IN_PROCESS_RETRY_AFTER_CAP = 2.0  # a longer Retry-After goes to a delay tier instead of blocking a lane
CIRCUIT_PAUSE = 0.5           # a delivery that met an open breaker is requeued after this (its consumer is off)

_log = structlog.get_logger("esb.runtime")


class RuntimeIO:
    """The StepIO of the runtime: adapter calls with quick retries, publishes with confirms."""

    __slots__ = ("runner", "attempt")

    def __init__(self, runner: RouteRunner, attempt: Attempt):
        self.runner, self.attempt = runner, attempt

    def call(self, step: Step, adapter: str, operation: str, message: Message) -> Message:
        key = self.attempt.effect_key(message.message_id, step.label)
        return first_then_retrying(self.runner.retrying, self.runner.adapters(adapter).call, operation, message,
                                   idempotency_key=key)

    def publish(self, step: Step, exchange: str, routing_key: str, message: Message) -> None:
        confirmation = self.runner.broker.publish(exchange, routing_key, to_outgoing(message))
        self.attempt.outputs.append((step.label, confirmation))

    def completed(self, step: Step, message: Message) -> None:
        key = self.attempt.effect_key(message.message_id, step.label)
        self.attempt.compensations.append(compensation.record(step, message, key))


class RouteRunner:
    def __init__(self, route: Route, broker: Broker, adapters: Callable[[str], Any], store=None,
                 owner: str = "", lease_seconds: float = LEASE_SECONDS, *, seal: Seal, hooks: Hooks | None = None,
                 timer: Timer | None = None, delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
                 max_body_bytes: int = DEFAULT_MAX_BODY):
        self.route, self.broker, self.adapters, self.owner = route, broker, adapters, owner
        self.lease_seconds, self.seal, self.delivery_limit = lease_seconds, seal, delivery_limit
        self.max_body_bytes = route.body_limit(max_body_bytes)
        self.hooks = hooks or Hooks([LogMiddleware()])
        self.store = store if store is not None and (route.idempotency or _has_calls(route)) else None
        self.claims = any(step.has_side_effects() for step in route.steps)  # else one write: `done`
        self.inline = self.store is None and not any(step.blocking for step in route.walk())
        # A store that can claim without waiting (SQLite's group commit): a first delivery is read
        # and claimed on the broker's thread and its steps run on a lane once the claim committed,
        # so no lane sleeps on the claim (an ordered route claims on its partition's lane).
        self.preclaim = self.claims and route.ordering is None and hasattr(self.store, "claim_later")
        self.record_later = hasattr(self.store, "record_step_later")
        self.last_call = max((i for i, step in enumerate(route.steps) if _calls_out(step)), default=-1)
        self.tiers = retry_delays_ms(route)
        # Quick in-process retries of a transient failure, bounded; longer waits go to a tier.
        # Built once: it is thread-safe, and one per call cost more than the call's own bookkeeping.
        self.retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(route.retry.in_process + 1) | tenacity.stop_any(_long_retry_after),
            wait=_wait, reraise=True,  # an open breaker is not retried here: the delivery waits (_failed)
            retry=tenacity.retry_if_exception_type(TransientError) & tenacity.retry_if_not_exception_type(CircuitOpen))
        self.key_expression = compile_expression(route.idempotency.key) \
            if route.idempotency and route.idempotency.key else None
        self._own_timer = timer is None
        self.timer = timer or Timer(f"esb-{route.name}-timer")
        ordering = route.ordering
        # An ordered route never requeues a delivery it gives back: it runs it again itself, so that
        # it keeps its place in its partition whatever the queue type does with a requeued message.
        self.settler = Settler(route.name, broker, self.hooks, self.store, self.timer, self._settled,
                               again=self._again if ordering else None)
        self.deliveries = DeliveryCounter(store)
        lanes = PURE_LANES if self.inline else route.concurrency
        self.lanes = Lanes(route.name, min(lanes, ordering.partitions) if ordering else lanes)
        self.order_expression = compile_expression(ordering.key) if ordering else None
        self.partitioner = Partitioner(route, broker, self.timer, self.max_body_bytes) if ordering else None
        # Queues consumed: an ordered route's partitions, one message at a time each; else its queue.
        self.queues = {q: 1 for q in partition_names(route)} if ordering else {route.source.queue: route.concurrency}
        self._inflight = 0
        self._attempt_ids = itertools.count(1)
        self._idle = threading.Condition()
        # `done` is committed by the store's own commit thread, which then acks (finish_later), or
        # by a Finisher thread for a store that writes only while its caller waits.
        self._finisher = Finisher(route.name, self.store, self._finished, self._not_finished) \
            if self.store is not None and not hasattr(self.store, "finish_later") else None
        self._circuits: list = []     # breakers of the adapters the route calls
        self._paused = False          # consumers cancelled while one of them is open
        self._draining = False        # set by drain(): a late delivery is no longer claimed early
        self._pause_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._finisher is not None:
            self._finisher.start()
        self.lanes.start()
        for queue, prefetch in self.queues.items():
            self.broker.consume(queue, prefetch, self._on_delivery)
        circuit = getattr(self.adapters, "circuit", None)
        # An ordered route is not paused: its partitions hold their head message in place anyway.
        if circuit is not None and self.route.ordering is None and hasattr(self.broker, "cancel"):
            self._circuits = [b for b in map(circuit, self.route.adapters) if b is not None]
            for breaker in self._circuits:
                breaker.subscribe(self._on_circuit)
        if self.partitioner is not None:
            self.partitioner.start()

    def drain(self, timeout: float = 30.0) -> bool:
        """Stop consuming and wait until in-flight messages are settled (Ctrl-C, SIGTERM); False if
        some were not within `timeout` (they stay unacked: the broker redelivers them)."""
        deadline = time.monotonic() + timeout
        # A delivery pika hands over after the wait below ends would be claimed for lanes that have
        # stopped, and its claim would hold the key against its own redelivery for a whole lease.
        # Taken to a lane instead, it is never run and goes back to the queue with its channel.
        self._draining = True
        if self.partitioner is not None:
            self.partitioner.stop(timeout)
        with self._pause_lock:
            for breaker in self._circuits:
                breaker.unsubscribe(self._on_circuit)
            self._circuits, paused = [], self._paused
        if hasattr(self.broker, "cancel") and not paused:
            for queue in self.queues:
                self.broker.cancel(queue)
        with self._idle:
            drained = self._idle.wait_for(lambda: self._inflight == 0, timeout)
        self.lanes.stop(max(0.0, deadline - time.monotonic()))
        if self._finisher is not None:
            self._finisher.stop(max(0.0, deadline - time.monotonic()))
        if self._own_timer:
            self.timer.stop()
        return drained

    def _on_circuit(self, _adapter: str, _state: str) -> None:
        """A breaker of the route's adapters changed: stop taking messages while one is open,
        take them again when none is (half-open: the next call is the trial)."""
        with self._pause_lock:
            paused = any(breaker.state == OPEN for breaker in self._circuits)
            if paused == self._paused or not self._circuits:
                return
            self._paused = paused
            for queue, prefetch in self.queues.items():
                if paused:
                    self.broker.cancel(queue)
                else:
                    self.broker.consume(queue, prefetch, self._on_delivery)

    def idle(self) -> bool:
        """Nothing waiting in the route's queue and nothing in flight (retry tiers not counted)."""
        depths = [self.broker.queue_depth(q) for q in (self.route.source.queue, *self.queues)]
        return self._inflight == 0 and all(depth is None or depth[0] == 0 for depth in depths)

    def _on_delivery(self, delivery: Delivery) -> None:
        """On the broker's thread: run a small delivery of a pure route here, hand the rest to a lane."""
        with self._idle:
            self._inflight += 1
        if (self.inline or (self.preclaim and not self._draining)) and not delivery.redelivered \
                and len(delivery.body) <= INLINE_MAX_BYTES:
            self.handle(delivery, inline=True)
        else:
            self.lanes.put(functools.partial(self.handle, delivery))

    def _settled(self) -> None:
        with self._idle:
            self._inflight -= 1
            if not self._inflight:  # only drain() waits, and only for zero
                self._idle.notify_all()

    # -- one delivery ---------------------------------------------------------------------

    def handle(self, delivery: Delivery, inline: bool = False) -> None:
        """Process one delivery until it is settled or handed to its confirms. `inline` (on the
        broker's thread) never blocks: whatever must wait moves to a lane."""
        attempt = Attempt(self.route.name, delivery, message_id_of(delivery), f"{self.owner}:{next(self._attempt_ids)}")
        try:
            self._process(attempt, inline)
        except Exception as exc:  # noqa: BLE001 - never lose the message: give it back
            self._later(inline, attempt, lambda exc=exc: self._give_back(attempt, exc))

    def _process(self, attempt: Attempt, inline: bool) -> None:
        delivery = attempt.delivery
        self.hooks.before_message(attempt)
        if delivery.headers and carries_state(delivery.headers):
            attempt.state, forged = read_state(delivery, self.route.name, attempt.message_id, self.seal)
            if forged:
                dropped = [h for h in delivery.headers if str(h).startswith(names.HEADER_PREFIX)]
                self.hooks.on_forged_state(attempt, headers=dropped)
        attempt.generations = dict(attempt.state.generations)
        # A sealed retry copy carries the body as its steps left it, which may have grown past
        # max_body: the limit is for what a source sends, and its body passed on the first delivery.
        if attempt.state.is_first and (too_large := body_too_large(len(delivery.body), self.max_body_bytes)):
            error = PermanentError(too_large, step="receive", error_class="too_large")
            return self._later(inline, attempt, lambda: self._dead_letter(attempt, error, "receive", 0, None))
        try:
            message = to_message(delivery, self.route.source.format)
            attempt.key = attempt.state.key or self._key(message)
            if self.order_expression is not None and order_key(self.order_expression, message) is None:
                raise PermanentError(f"the ordering key {self.route.ordering.key} is missing from the message",
                                     step="ordering", error_class="no_order_key")
        except ProcessingError as exc:
            return self._later(inline, attempt, lambda exc=exc: self._dead_letter(
                attempt, exc, "receive", attempt.state.resume_step, None))
        attempt.compensations = list(attempt.state.compensations)
        self._claim_and_run(attempt, message, attempt.state.resume_step, inline)

    def _claim_and_run(self, attempt: Attempt, message: Message, start: int, inline: bool = False,
                       again: bool = False) -> None:
        """Claim the message's key (if the route keeps records), then run its steps from `start`.
        `again`: an ordered route's message that waited in place for its key (counted once already)."""
        if self.store is not None:
            if inline:  # a first delivery on the broker's thread (see preclaim): never redelivered
                return self._claim_later(attempt, message, start)
            resumed = self._claim(attempt, message, start)
            if resumed is None:
                return
            start, message = resumed
        if attempt.delivery.redelivered and not again and self._over_delivery_limit(attempt, message, start):
            return
        self._run(attempt, message, start, inline)

    def _run(self, attempt: Attempt, message: Message, start: int, inline: bool) -> None:
        io = RuntimeIO(self, attempt)
        try:
            result = run_steps(self.route.steps, message, io, start, self._recorder(attempt))
        except StepFailed as failed:
            self.hooks.on_step_failed(attempt, error=failed.error)
            return self._later(inline, attempt, lambda failed=failed: self._failed(attempt, failed))
        except PermanentError as exc:  # the broker returned an output a step recorded: nothing is bound for it
            return self._dead_letter(attempt, exc, exc.step, start, None)
        if self.store is not None:  # `done` is written (with others) once the outputs are confirmed
            outcome = {"dropped": result is None}
            self._when_confirmed(attempt, start, lambda: self._finish(attempt, outcome))
        else:
            self._when_confirmed(attempt, start, lambda: self.settler.ack(
                attempt, outputs=len(attempt.outputs), filtered=result is None))

    def _claim(self, attempt: Attempt, message: Message, start: int) -> tuple[int, Message] | None:
        """Take the message's record in the store; None when this copy is settled here (done
        already, or busy elsewhere and sent to wait)."""
        if not self.claims:  # a route without side effects writes only `done`
            record = self.store.get(self.route.name, attempt.key)
            if record is not None and record.state == "done":
                self.settler.skip(attempt, reason="done")
                return None
            return start, message
        claim = self.store.claim(self.route.name, attempt.key, attempt.owner, self.lease_seconds)
        return self._claimed(attempt, message, start, claim)

    def _claim_later(self, attempt: Attempt, message: Message, start: int) -> None:
        """Claim without waiting (on the broker's thread); the steps run on a lane once it committed,
        in the context variables this thread set for the message (the tracing middleware's span)."""
        context = contextvars.copy_context()

        def claimed(claim: Claim | None, error: Exception | None) -> None:  # on the store's commit thread
            self.lanes.put(lambda: context.run(self._settling, attempt, lambda: self._run_claimed(
                attempt, message, start, claim, error)))
        self.store.claim_later(self.route.name, attempt.key, attempt.owner, self.lease_seconds, claimed)

    def _run_claimed(self, attempt: Attempt, message: Message, start: int, claim: Claim | None,
                     error: Exception | None) -> None:
        if error is not None:
            raise error  # the store failed: the delivery is given back
        resumed = self._claimed(attempt, message, start, claim)
        if resumed is not None:
            start, message = resumed
            self._run(attempt, message, start, False)

    def _claimed(self, attempt: Attempt, message: Message, start: int, claim: Claim) -> tuple[int, Message] | None:
        """Act on the store's answer to a claim: settle a copy done already, send a busy one to wait,
        or take the record and resume after the steps it recorded."""
        if claim.status == "done":
            self.settler.skip(attempt, reason="done")
            return None
        if claim.status == "busy":
            self._wait_busy(attempt, message, start, claim.lease_until)
            return None
        attempt.claimed = True
        for step, generation in claim.generations.items():
            attempt.generations[step] = max(generation, attempt.generations.get(step, 1))
        if claim.progress and claim.progress[-1].index >= start:
            start, message = resume_point(claim.progress, message, attempt)
            self.hooks.on_resumed(attempt, step_index=start)
        return start, message

    def _over_delivery_limit(self, attempt: Attempt, message: Message, start: int) -> bool:
        """A redelivery not given back by esb itself: the last copy died or stalled its worker."""
        if self.settler.was_given_back(attempt.message_id):
            return False
        count = self.deliveries.deliveries(self.route.name, attempt.message_id)
        if count <= self.delivery_limit:
            return False
        error = PermanentError(f"delivered {count} times without being settled (the limit is "
                               f"{self.delivery_limit}): it stops or kills the worker that takes it",
                               step=self._label(start), error_class="delivery_limit")
        self._dead_letter(attempt, error, error.step, start, message)
        self.deliveries.forget(self.route.name, attempt.message_id)  # a replay starts counting afresh
        return True

    def _later(self, inline: bool, attempt: Attempt, work: Callable[[], None]) -> None:
        """Do `work` now, or (inline, on the broker's thread) on a lane: it may wait for confirms."""
        if inline:
            self.lanes.put(lambda: self._settling(attempt, work))
        else:
            work()

    def _settling(self, attempt: Attempt, work: Callable[[], None]) -> None:
        """Run work that settles `attempt` on a lane; if it fails, the delivery is given back."""
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - never lose the message
            self._give_back(attempt, exc)

    def _give_back(self, attempt: Attempt, error: Exception) -> None:
        """esb itself failed on this delivery (a lost confirm, the store down, a bug): give it back.
        A message given back MAX_GIVE_BACKS times in a row is dead-lettered instead, if it can be,
        so that no delivery cycles forever on a fault that does not pass."""
        times = self.settler.times_given_back(attempt.message_id)
        if times >= MAX_GIVE_BACKS and not attempt.settled:
            unsettled = PermanentError(f"esb could not settle it {times} times in a row; the last time: "
                                       f"{type(error).__name__}: {error}", step=self._label(attempt.state.resume_step),
                                       error_class="unsettled")
            try:
                return self._dead_letter(attempt, unsettled, unsettled.step, attempt.state.resume_step, None)
            except Exception:  # noqa: BLE001 - the dead letter failed too (broker or store down): give it back
                pass
        self.settler.give_back(attempt, error)

    def _key(self, message: Message) -> str:
        spec = self.route.idempotency
        if spec is None:
            return store_key(message.message_id, "message id")
        where = f"header {spec.header}" if spec.header else f"key {spec.key}"
        value = message.headers.get(spec.header) if spec.header else self.key_expression.search(
            message.body if message.is_json else {}, message.headers)
        if value is None or value == "":
            raise PermanentError(f"the idempotency {where} is missing from the message", step="idempotency")
        return store_key(value, where)

    def _recorder(self, attempt: Attempt):
        if self.store is None and not self.hooks.wants_steps:
            return None
        last = len(self.route.steps) - 1
        record = self.store is not None and self.claims

        def after_step(index: int, step: Step, message: Message) -> None:
            self.hooks.after_step(attempt, step=step, message=message)
            # Only a step that called out must not run twice; a publish repeated after a crash is
            # at-least-once, and after the last step `done` is written at once anyway.
            if record and index != last and _calls_out(step):
                self._record_step(attempt, index, step, message)
        return after_step

    def _record_step(self, attempt: Attempt, index: int, step: Step, message: Message) -> None:
        confirm(attempt.outputs)  # a recorded publish must really have been sent
        new = [c for c in attempt.compensations if c["step"] == step.label]
        state = {**stored_body(message), "headers": dict(message.headers)}
        record = StepRecord(index, step.label, state, new[-1] if new else None)
        if index == self.last_call and self.record_later:
            # No call follows, so nothing waits for this record but the `done`, release or dead mark
            # written after it, and the store commits those after it: the lane does not wait.
            return self.store.record_step_later(self.route.name, attempt.key, attempt.owner, record,
                                                functools.partial(self._recorded, attempt, step.label))
        self.store.record_step(self.route.name, attempt.key, attempt.owner, record)

    def _recorded(self, attempt: Attempt, step: str, _result: None, error: Exception | None) -> None:
        """A step record written without waiting failed (on the store's commit thread). The message
        is settled by what follows it: a `done` or dead mark fails too if the lease was lost (the
        delivery is then given back), and one that commits settles it whatever the record was."""
        if error is not None:
            _log.warning("step_not_recorded", route=self.route.name, step=step, message_id=attempt.message_id,
                         error=str(error))

    # -- after the steps ------------------------------------------------------------------

    def _when_confirmed(self, attempt: Attempt, start: int, settle: Callable[[], None]) -> None:
        """`settle` the message once the broker confirmed every output: nobody waits, so confirms
        are pipelined across messages. The last confirm calls it on the broker's thread (so it must
        not block); a refused output sends the message to a lane to be dead-lettered."""
        if not attempt.outputs:
            return settle()
        remaining = [len(attempt.outputs)]
        lock = threading.Lock()

        def confirmed(_future: Confirmation) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            if any(f.exception() is not None for _, f in attempt.outputs):
                self.lanes.put(lambda: self._settling(attempt, lambda: self._after_refusal(attempt, start)))
                return
            settle()
        for _, future in attempt.outputs:
            future.add_done_callback(confirmed)

    def _finish(self, attempt: Attempt, outcome: dict) -> None:
        """Record `done`, then ack; on the broker's thread, so nothing here waits. SQLite commits it
        with the other writes pending and acks from its commit thread; other stores go through the
        Finisher (finisher.py), whose thread waits for the write."""
        if self._finisher is not None:
            return self._finisher.finish(attempt, attempt.key, attempt.owner, outcome)
        try:
            self.store.finish_later(self.route.name, attempt.key, attempt.owner, outcome,
                                    functools.partial(self._done, attempt, outcome.get("dropped", False)))
        except Exception as exc:  # noqa: BLE001 - the store is closed: give the delivery back
            self._done(attempt, False, None, exc)

    def _done(self, attempt: Attempt, filtered: bool, _result: None, error: Exception | None) -> None:
        """`done` committed (on the store's commit thread): ack. If it failed, the delivery is given
        back on a lane, since a give-back writes to the store and this thread must not wait on it."""
        if error is None:
            return self._finished(attempt, filtered)
        self.lanes.put(lambda: self._give_back(attempt, error))

    def _finished(self, attempt: Attempt, filtered: bool = False) -> None:
        attempt.claimed = False  # `done` is written: nothing to release
        self.settler.ack(attempt, outputs=len(attempt.outputs), filtered=filtered)

    def _not_finished(self, failed: list[tuple[Attempt, Exception]]) -> None:
        """The Finisher could not record these done (lease lost, store down): give them back."""
        for attempt, error in failed:
            self._give_back(attempt, error)

    def _after_refusal(self, attempt: Attempt, start: int) -> None:
        try:
            confirm(attempt.outputs)
        except PermanentError as exc:  # returned: nothing is bound for an output
            return self._dead_letter(attempt, exc, exc.step, start, None)
        except TransientError as exc:
            raise RuntimeError(f"an output was not confirmed: {exc}") from exc

    # -- failures (on a lane: they wait for confirms, the store and compensations) ----------

    def _failed(self, attempt: Attempt, failed: StepFailed) -> None:
        error = failed.error
        try:
            confirm(attempt.outputs)
        except TransientError as exc:
            raise RuntimeError(f"an output was not confirmed: {exc}") from exc
        except PermanentError:
            pass  # the failure being handled is the one to report
        if isinstance(error, CircuitOpen):  # nothing was sent: wait for the breaker, no attempt counted
            pause = error.retry_after if self.route.ordering is not None else CIRCUIT_PAUSE
            return self.settler.give_back(attempt, error, pause=max(pause, 0.1), counted=False)
        if isinstance(error, TransientError) and attempt.state.attempt < self.route.retry.attempts:
            delay = retry.tier_for(self.tiers, attempt.state.attempt + 1, error.retry_after)
            if self.route.ordering is not None:
                return self._retry_in_place(attempt, failed.message, failed.index, delay)
            return self._retry(attempt, failed.message, failed.index, attempt.state.attempt + 1, delay, "transient")
        if isinstance(error, TransientError):
            error = PermanentError(f"retries exhausted after {attempt.state.attempt} attempts: {error}",
                                   step=error.step, error_class="retries_exhausted")
        self._dead_letter(attempt, error, error.step, failed.index, failed.message)

    def _wait_busy(self, attempt: Attempt, message: Message, start: int, lease_until: float | None) -> None:
        """Another worker holds this key: wait in a tier, longer each time, as long as its lease runs
        (bounded by MAX_BUSY_IN_LEASE), then at most MAX_BUSY times."""
        busy = attempt.state.busy + 1
        lease_left = lease_until - time.time() if lease_until else None
        leased = lease_left is not None and lease_left > 0
        if (busy > retry.MAX_BUSY and not leased) or busy > retry.MAX_BUSY_IN_LEASE:
            error = PermanentError(f"the key stayed in progress on another worker through {busy - 1} waits",
                                   step=self._label(start), error_class="busy")
            return self._dead_letter(attempt, error, error.step, start, message)
        delay = retry.busy_tier(self.tiers, busy - 1, lease_left)
        if self.route.ordering is not None:  # wait holding the partition: later messages of the key stay behind
            attempt.state = dataclasses.replace(attempt.state, busy=busy)
            self.hooks.on_retry(attempt, reason="busy", delay_ms=delay, next_attempt=attempt.state.attempt,
                                resume_step=start)
            return self._hold(attempt, delay, lambda: self._claim_and_run(attempt, message, start, again=True))
        self._retry(attempt, message, start, attempt.state.attempt, delay, "busy", busy=busy)

    def _retry(self, attempt: Attempt, message: Message, index: int, next_attempt: int, delay: int, reason: str,
               busy: int = 0) -> None:
        state = retry.state_message(attempt, message, index, next_attempt, self.seal, busy)
        self.settler.retry(attempt, names.retry_queue(self.route.name, delay), state, reason=reason, delay_ms=delay,
                           next_attempt=next_attempt, resume_step=index)

    def _retry_in_place(self, attempt: Attempt, message: Message, index: int, delay: int) -> None:
        """An ordered route's transient failure: the delivery stays unacked and runs again from the
        failed step after `delay` ms, holding its partition; a delay tier would let later messages
        of its key overtake it. The claim stays held; the attempt count lives in this process (a
        worker that dies gives the message to another, which counts afresh)."""
        next_attempt = attempt.state.attempt + 1
        attempt.state = dataclasses.replace(attempt.state, attempt=next_attempt, resume_step=index,
                                            first_failure=attempt.state.first_failure or retry.now_iso())
        self.hooks.on_retry(attempt, reason="transient", delay_ms=delay, next_attempt=next_attempt, resume_step=index)
        self._hold(attempt, delay, lambda: self._run(attempt, message, index, False))

    def _hold(self, attempt: Attempt, delay_ms: int, work: Callable[[], None]) -> None:
        """Run `work` on a lane after `delay_ms`, the delivery still unsettled (no thread sleeps)."""
        self.timer.after(delay_ms / 1000, lambda: self.lanes.put(lambda: self._settling(attempt, work)))

    def _again(self, delivery: Delivery) -> None:
        """An ordered route's given-back delivery runs again here, keeping its place in its partition."""
        with self._idle:
            self._inflight += 1
        self.lanes.put(functools.partial(self.handle, delivery))

    def _dead_letter(self, attempt: Attempt, error: ProcessingError, step: str | None, index: int,
                     message: Message | None) -> None:
        summary, generations = compensation.compensate(attempt, self.adapters, self.retrying, self.hooks)
        letter = deadletter.letter(attempt, error, step, index, message, summary, generations, self.seal)
        self.settler.dead_letter(attempt, names.dead_letter_queue(self.route.name), letter, generations,
                                 step=step or "", error_class=error.error_class, compensation=summary,
                                 reason=str(letter.headers[names.DLQ_REASON]))

    def _label(self, index: int) -> str:
        steps = self.route.steps
        return steps[index].label if 0 <= index < len(steps) else "receive"


def first_then_retrying(retrying: tenacity.Retrying, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`retrying(call, *args, **kwargs)`, with the first attempt made outside tenacity: a call that
    succeeds (nearly all of them) skips tenacity's bookkeeping (~10 µs of CPU per call, measured
    with 64 lanes on 2 cores). Only a TransientError can be retried (see RouteRunner.retrying); on
    one, tenacity takes over with that failure as its first attempt, so its stop, wait and reraise
    apply exactly as if it had made the call itself."""
    try:
        return call(*args, **kwargs)
    except TransientError as exc:
        first: list[BaseException] = [exc]

    def again(*args: Any, **kwargs: Any) -> Any:
        if first:
            raise first.pop()
        return call(*args, **kwargs)
    return retrying(again, *args, **kwargs)


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
