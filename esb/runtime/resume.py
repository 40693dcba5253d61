"""After a crash: where a redelivered message picks up, and when a message has been delivered too often.

A worker killed after posting a voucher but before acking leaves the message's record in progress
with its completed side effects; the copy the broker redelivers resumes after the last of them.
A message that is delivered again and again without being settled (it kills or stalls its worker)
is dead-lettered once it has been delivered more than the delivery limit, on classic and quorum
queues alike: esb counts redeliveries itself (in the store, which survives the worker; in memory
when there is none), since classic queues count nothing.
"""

from __future__ import annotations

import collections
import threading

from esb.message import Message
from esb.runtime.attempt import Attempt
from esb.runtime.envelope import body_of

DEFAULT_DELIVERY_LIMIT = 3


def resume_point(progress, message: Message, attempt: Attempt) -> tuple[int, Message]:
    """Continue after the last side effect the store recorded, which may be further than the
    resume point a retried message carries."""
    last = progress[-1]
    state = last.state
    body = body_of(state)
    attempt.compensations = [r.compensation for r in progress if r.compensation]
    return last.index + 1, Message(body, state["content_type"], state.get("headers", {}), message.message_id)


class DeliveryCounter:
    """How many times a message has been delivered: 1 for a first delivery, more for redeliveries."""

    def __init__(self, store=None, remembered: int = 10_000):
        self.store = store
        self._memory: collections.OrderedDict[tuple[str, str], int] = collections.OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def deliveries(self, route: str, message_id: str) -> int:
        """Count one more redelivery of `message_id` and return the deliveries so far (>= 2)."""
        if self.store is not None:
            return 1 + self.store.count_redelivery(route, message_id)
        with self._lock:
            count = self._memory.pop((route, message_id), 0) + 1
            self._memory[(route, message_id)] = count
            while len(self._memory) > self._remembered:
                self._memory.popitem(last=False)
        return 1 + count

    def forget(self, route: str, message_id: str) -> None:
        """The message was dead-lettered for its deliveries: a replay of it starts counting afresh."""
        if self.store is not None:
            self.store.forget_redeliveries(route, message_id)
        else:
            with self._lock:
                self._memory.pop((route, message_id), None)
