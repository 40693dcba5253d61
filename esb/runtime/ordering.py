"""Order per key: messages with the same key (a bank account) run one at a time, in the order published.

RabbitMQ keeps order within a queue, and a queue declared with single active consumer is handed to
one consumer at a time across every connection, another taking over when it goes. An ordered route
builds on those two facts alone:

    source exchange -> <route>  (single active consumer) -> the partitioner
                    -> <route>.p<crc32(key) % partitions>  (single active consumer, prefetch 1) -> the steps

Sources publish as before. The partitioner moves one message at a time: publish to its partition,
wait for the confirm, then ack; so a message is in its partition before the next one is read, and a
crash in between leaves a duplicate behind its original, never ahead of it (the idempotency store
skips it). Each partition runs one message at a time on whichever worker the broker made active;
a failed message is retried in place (worker.py), holding back the later messages of its key.

A message whose retries run out (or that fails for good) is dead-lettered, and the later messages of
its key go on: a ledger must not stop for one bad posting, and the dead letter is the operator's
signal. Order for that key then holds again from the next message on; `esb dlq replay` puts the
dead one at the end of its key's line, not back in its old place.
"""

from __future__ import annotations

import functools
import zlib

import structlog

from esb.errors import ProcessingError
from esb.message import Message
from esb.routes.model import Route, body_too_large
from esb.runtime import names
from esb.runtime.broker import Broker, Confirmation, Delivery, Outgoing
from esb.runtime.envelope import message_id_of, to_message
from esb.runtime.lanes import Lanes, Timer
from esb.transform.expressions import compile_expression

log = structlog.get_logger("esb.runtime")

MOVE_RETRY_PAUSE = 1.0  # seconds before a message whose move was refused goes back to the route's queue


def order_key(expression, message: Message) -> str | None:
    """The message's ordering key as text, or None when it has none."""
    value = expression.search(message.body if message.is_json else {}, message.headers)
    return None if value is None or value == "" else str(value)


def partition_of(key: str, partitions: int) -> int:
    """The partition of `key`: crc32, the same in every process (Python's hash() is salted per process)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


def partition_names(route: Route) -> list[str]:
    return [names.partition_queue(route.name, i) for i in range(route.ordering.partitions)]


class Partitioner:
    """Reads an ordered route's queue (one partitioner at a time across workers) and moves each
    message, in order, to the partition of its key. A message without a readable key goes to
    partition 0, where the route dead-letters it saying why."""

    def __init__(self, route: Route, broker: Broker, timer: Timer, max_body_bytes: int):
        self.route, self.broker, self.timer, self.max_body_bytes = route, broker, timer, max_body_bytes
        self.expression = compile_expression(route.ordering.key)
        self.lane = Lanes(f"{route.name}-partitioner", 1)  # parsing a body never blocks the broker's thread

    def start(self) -> None:
        self.lane.start()
        self.broker.consume(self.route.source.queue, 1, lambda d: self.lane.put(functools.partial(self._move, d)))

    def stop(self, timeout: float) -> None:
        if hasattr(self.broker, "cancel"):
            self.broker.cancel(self.route.source.queue)
        self.lane.stop(timeout)

    def partition(self, delivery: Delivery) -> int:
        if body_too_large(len(delivery.body), self.max_body_bytes):
            return 0
        try:
            key = order_key(self.expression, to_message(delivery, self.route.source.format))
        except ProcessingError:
            key = None
        return partition_of(key or "", self.route.ordering.partitions)

    def _move(self, delivery: Delivery) -> None:
        queue = names.partition_queue(self.route.name, self.partition(delivery))
        outgoing = Outgoing(delivery.body, delivery.content_type or "", dict(delivery.headers),
                            message_id_of(delivery))
        self.broker.publish("", queue, outgoing).add_done_callback(functools.partial(self._moved, delivery))

    def _moved(self, delivery: Delivery, confirmation: Confirmation) -> None:
        error = confirmation.exception()
        if error is None:
            self.broker.ack(delivery)
            return
        # Back to its place at the head of the route's queue (prefetch 1: nothing was read after it).
        log.warning("partition_move_failed", route=self.route.name, message_id=message_id_of(delivery),
                    error=str(error))
        self.timer.after(MOVE_RETRY_PAUSE, lambda: self.broker.reject(delivery, requeue=True))
