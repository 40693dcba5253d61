"""Group commit of `done`: messages whose outputs the broker confirmed are finished together, then acked.

A route with an idempotency store must record each message as done before it acks it. Written
by each route thread for its own message, after waiting for its confirms, that is one store
statement per message, and each one lets go of the GIL and waits among the route's threads to
take it back. Confirms arrive in batches (the broker confirms `multiple`), so the broker's
thread hands each confirmed message here and one thread writes the `done` of every message
waiting in one statement (SqliteStore.finish_many; a pipeline on Redis), then acks them.
Measured on the bench's I/O route (64 threads POSTing, 2 cores): 680-690 msg/s before, 755-790
after; context switches per message 62 -> 46.

Nothing is acked before its `done` is written; a message whose record another worker took over
(LeaseLost) or whose store failed is given back to the broker, as a failed `finish` always was.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from esb.runtime.broker import Broker, Delivery

log = structlog.get_logger("esb.worker")
MAX_BATCH = 256          # messages finished in one go at most
GIVE_BACK_PAUSE = 1.0    # seconds before a message that could not be finished is requeued


class Finisher:
    """One thread per route with a store: `finish(delivery, key, owner, outcome)` from any thread."""

    def __init__(self, route: str, store: Any, broker: Broker, settled: Callable[[], None]):
        self.route, self.store, self.broker, self._settled = route, store, broker, settled
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"esb-{route}-finish", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def finish(self, delivery: Delivery, key: str, owner: str, outcome: dict) -> None:
        self._queue.put((delivery, key, owner, outcome))

    def _loop(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._finish(batch)

    def _finish(self, batch: list[tuple[Delivery, str, str, dict]]) -> None:
        try:
            errors = self.store.finish_many(self.route, [(key, owner, outcome) for _, key, owner, outcome in batch])
        except Exception as exc:  # noqa: BLE001 - StoreUnavailable, or a bug: never lose the messages
            errors = [exc] * len(batch)
        given_back = []
        for (delivery, _, _, outcome), error in zip(batch, errors, strict=True):
            if error is not None:
                log.error("delivery_not_settled", route=self.route, message_id=delivery.message_id,
                          error=f"{type(error).__name__}: {error}")
                given_back.append(delivery)
                continue
            self.broker.ack(delivery)
            log.info("message_acked", route=self.route, message_id=delivery.message_id,
                     filtered=outcome.get("dropped", False))
            self._settled()  # last: drain() may return, and the test or process end, right after
        if given_back:
            time.sleep(GIVE_BACK_PAUSE)
            for delivery in given_back:
                self.broker.reject(delivery, requeue=True)
                self._settled()
