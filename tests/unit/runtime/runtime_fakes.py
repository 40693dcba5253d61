"""Fakes for the runtime's unit tests: a broker that records, a store that records, a hook recorder."""

from __future__ import annotations

import threading

from esb.runtime.broker import Confirmation, Delivery, Outgoing
from esb.runtime.middleware import HOOKS, Middleware


class RecordingBroker:
    """publish/ack/reject recorded in one list of events, in order. Publishes are confirmed at once
    unless `confirms` is False (then `pending` holds them) or `refuse` is set (then they fail)."""

    url = "fake://"

    def __init__(self, confirms: bool = True, refuse: BaseException | None = None):
        self.confirms, self.refuse = confirms, refuse
        self.events: list[tuple] = []
        self.pending: list[Confirmation] = []
        self.changed = threading.Condition()

    def _note(self, *event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def publish(self, exchange: str, routing_key: str, message: Outgoing) -> Confirmation:
        self._note("publish", routing_key, message)
        confirmation = Confirmation()
        if self.refuse is not None:
            confirmation.set_exception(self.refuse)
        elif self.confirms:
            confirmation.set_result(None)
        else:
            self.pending.append(confirmation)
        return confirmation

    def ack(self, delivery: Delivery) -> None:
        self._note("ack", delivery.message_id)

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        self._note("reject", delivery.message_id, requeue)

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 5.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.kinds().count(kind) >= count, timeout)


class RecordingStore:
    """Records release and mark_dead (and the broker events seen before each, when given a broker)."""

    def __init__(self, broker: RecordingBroker | None = None):
        self.broker = broker
        self.calls: list[tuple] = []

    def _seen(self) -> list:
        return self.broker.kinds() if self.broker else []

    def release(self, route, key, owner):
        self.calls.append(("release", key, self._seen()))

    def mark_dead(self, route, key, owner, generations=None):
        self.calls.append(("mark_dead", key, dict(generations or {}), self._seen()))


class Recorder(Middleware):
    """Records every hook call: (hook name, facts)."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        for name in HOOKS:
            if name != "after_step":  # overriding it asks the runner for per-step calls
                setattr(self, name, self._recording(name))

    def _recording(self, name):
        def record(attempt, **facts):
            self.calls.append((name, facts))
        return record

    def named(self, name: str) -> list[dict]:
        return [facts for hook, facts in self.calls if hook == name]


def delivery(message_id: str = "m-1", body: bytes = b'{"claim_id": "C-1"}', headers=None,
             redelivered: bool = False, queue: str = "q") -> Delivery:
    return Delivery(body, "application/json", headers or {}, message_id, queue, redelivered, message_id)
