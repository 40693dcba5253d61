"""The one object that settles a route's deliveries: each exactly once, by ack, retry, dead letter or give-back.

Nothing else acks or rejects. Retry and dead letter publish what replaces the delivery (its sealed
retry state, or the dead letter) and ack only once the broker confirmed it; a give-back releases
what the delivery held in the store and requeues it after a pause that grows with each give-back
of the same message, run by the runtime's timer (no thread sleeps). A message esb gave back is not
counted against the delivery limit when it comes back to this process: esb settled it on purpose.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

from esb.errors import ProcessingError, TransientError
from esb.runtime.attempt import Attempt
from esb.runtime.broker import Broker, Confirmation, Delivery, Outgoing, wait_all
from esb.runtime.lanes import Timer
from esb.runtime.middleware import Hooks

CONFIRM_TIMEOUT = 30.0
FIRST_PAUSE, MAX_PAUSE = 1.0, 60.0  # seconds before a given-back delivery is requeued
_REMEMBERED = 10_000                # given-back message ids kept in memory


class SettledTwice(RuntimeError):
    """A bug: something tried to settle a delivery that was already settled."""


class Settler:
    def __init__(self, route: str, broker: Broker, hooks: Hooks, store, timer: Timer,
                 on_settled: Callable[[], None], again: Callable[[Delivery], None] | None = None):
        self.route, self.broker, self.hooks, self.store, self.timer = route, broker, hooks, store, timer
        self._on_settled = on_settled
        self._again = again  # instead of a requeue after the pause: run the delivery again in this process
        self._given_back: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._lock = threading.Lock()

    # -- the four ways a delivery ends ----------------------------------------------------------

    def ack(self, attempt: Attempt, outputs: int = 0, filtered: bool = False) -> None:
        """Every output confirmed (and, with a store, recorded done): ack. Safe on the broker's thread."""
        self._mark_settled(attempt)
        self.broker.ack(attempt.delivery)
        self.hooks.on_ack(attempt, outputs=outputs, filtered=filtered)
        self._end(attempt, "acked")

    def skip(self, attempt: Attempt, reason: str) -> None:
        """A copy of a message that is done already: ack it, never run it."""
        self._mark_settled(attempt)
        self.broker.ack(attempt.delivery)
        self.hooks.on_skip(attempt, reason=reason)
        self._end(attempt, "skipped")

    def retry(self, attempt: Attempt, queue: str, state_message: Outgoing, *, reason: str, delay_ms: int,
              next_attempt: int, resume_step: int) -> None:
        """Publish the sealed retry state to a delay tier; once confirmed, release the claim and ack."""
        self._not_yet_settled(attempt)  # before publishing: a second settle must not send a second copy
        confirm([("retry", self.broker.publish("", queue, state_message))])
        self._release(attempt)
        self._mark_settled(attempt)
        self.broker.ack(attempt.delivery)
        self.hooks.on_retry(attempt, reason=reason, delay_ms=delay_ms, next_attempt=next_attempt,
                            resume_step=resume_step)
        self._end(attempt, "retried")

    def dead_letter(self, attempt: Attempt, queue: str, letter: Outgoing, generations: dict, *, step: str,
                    error_class: str, compensation: str, reason: str) -> None:
        """Publish the dead letter; once confirmed, mark the key dead (with its generations) and ack."""
        self._not_yet_settled(attempt)
        confirm([("dead-letter", self.broker.publish("", queue, letter))])
        if attempt.claimed:  # before the ack: if the store fails, the delivery is given back, not lost
            self.store.mark_dead(self.route, attempt.key, attempt.owner, generations=generations)
            attempt.claimed = False
        self._mark_settled(attempt)
        self.broker.ack(attempt.delivery)
        self.hooks.on_dead_letter(attempt, step=step, error_class=error_class, compensation=compensation,
                                  reason=reason)
        self._end(attempt, "dead_lettered")

    def give_back(self, attempt: Attempt, error: Exception, pause: float | None = None,
                  counted: bool = True) -> None:
        """esb could not settle it (a confirm that never came, the store down): release what it
        holds and requeue it after a pause. Call it off the broker's thread (the store is written).
        `counted=False` (an adapter's circuit breaker is open): it waits `pause`, its give-backs in
        a row are not counted towards a dead letter, and its redelivery not against the limit."""
        if attempt.settled:
            return  # e.g. a failure after the ack was already sent: nothing left to give back
        self._mark_settled(attempt)
        self._release(attempt)
        if counted:
            pause = self._pause(attempt.message_id)
        else:
            with self._lock:
                self._given_back.setdefault(attempt.message_id, 0)
                if len(self._given_back) > _REMEMBERED:
                    self._given_back.popitem(last=False)
        self.hooks.on_give_back(attempt, error=error, pause=pause)
        delivery = attempt.delivery
        self.timer.after(pause, (lambda: self._again(delivery)) if self._again is not None
                         else (lambda: self.broker.reject(delivery, requeue=True)))
        self._end(attempt, "given_back")

    def was_given_back(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._given_back

    def times_given_back(self, message_id: str) -> int:
        """How often this process gave the message back since it was last settled otherwise."""
        with self._lock:
            return self._given_back.get(message_id, 0)

    # -- bookkeeping ----------------------------------------------------------------------------

    def _mark_settled(self, attempt: Attempt) -> None:
        self._not_yet_settled(attempt)
        attempt.settled = True

    def _not_yet_settled(self, attempt: Attempt) -> None:
        if attempt.settled:
            raise SettledTwice(f"message {attempt.message_id} of route {self.route} was settled already")

    def _end(self, attempt: Attempt, outcome: str) -> None:
        if outcome != "given_back" and self._given_back:
            with self._lock:
                self._given_back.pop(attempt.message_id, None)
        self.hooks.after_message(attempt, outcome=outcome)
        self._on_settled()

    def _release(self, attempt: Attempt) -> None:
        if not attempt.claimed:
            return
        attempt.claimed = False
        try:
            self.store.release(self.route, attempt.key, attempt.owner)
        except Exception:  # noqa: BLE001 - the lease runs out by itself; settling must go on
            pass

    def _pause(self, message_id: str) -> float:
        with self._lock:
            count = self._given_back.pop(message_id, 0) + 1
            self._given_back[message_id] = count
            while len(self._given_back) > _REMEMBERED:
                self._given_back.popitem(last=False)
        return min(FIRST_PAUSE * 2 ** min(count - 1, 30), MAX_PAUSE)  # 2**1024 is no float: capped


def confirm(outputs: list[tuple[str, Confirmation]], timeout: float = CONFIRM_TIMEOUT) -> None:
    """Wait until the broker confirmed every output; raise the first refusal, naming its step."""
    if not wait_all((f for _, f in outputs), timeout):
        raise TransientError("the broker did not confirm an output in time")
    for label, future in outputs:
        error = future.exception()
        if isinstance(error, ProcessingError):
            raise error.at_step(label)
        if error is not None:
            raise TransientError(f"publish failed: {error}", step=label)
