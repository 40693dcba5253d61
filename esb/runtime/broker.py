"""The one small protocol the runtime talks to: declare, consume, publish-and-confirm, ack, reject.

Two implementations: `RabbitBroker` (pika, pipelined confirms) and `KombuBroker` (the embedded
`memory://` default and other kombu transports).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol

from esb.errors import PermanentError, TransientError


@dataclasses.dataclass(frozen=True)
class Outgoing:
    """A message as it goes on the wire."""

    body: bytes
    content_type: str
    headers: Mapping[str, Any]
    message_id: str


@dataclasses.dataclass(frozen=True)
class Delivery:
    """A message as it came off a queue; `tag` is what ack/reject need."""

    body: bytes
    content_type: str | None
    headers: Mapping[str, Any]
    message_id: str | None
    queue: str
    redelivered: bool
    tag: Any


@dataclasses.dataclass(frozen=True)
class QueueSpec:
    name: str
    quorum: bool = False
    ttl_ms: int | None = None
    dead_letter_to: str | None = None  # a queue name: dead letters go back through the default exchange


@dataclasses.dataclass(frozen=True)
class Binding:
    queue: str
    exchange: str
    routing_key: str


@dataclasses.dataclass(frozen=True)
class Topology:
    exchanges: tuple[tuple[str, str], ...] = ()  # (name, type)
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[Binding, ...] = ()

    def merge(self, other: Topology) -> Topology:
        return Topology(tuple(dict.fromkeys(self.exchanges + other.exchanges)),
                        tuple(dict.fromkeys(self.queues + other.queues)),
                        tuple(dict.fromkeys(self.bindings + other.bindings)))


class Unroutable(PermanentError):
    """The broker returned a mandatory publish: no queue is bound for it."""


class NotConfirmed(TransientError):
    """The broker refused (nacked) a publish, or the connection dropped before the confirm."""


OnDelivery = Callable[[Delivery], None]


class Broker(Protocol):
    def start(self) -> None:
        """Connect; after this, declare/consume/publish may be called."""

    def declare(self, topology: Topology) -> None:
        """Declare exchanges, queues and bindings (idempotent; redone after a reconnect)."""

    def consume(self, queue: str, prefetch: int, on_delivery: OnDelivery) -> None:
        """Deliver messages of `queue` to `on_delivery` (called on the broker's thread: hand off fast)."""

    def publish(self, exchange: str, routing_key: str, message: Outgoing) -> Future[None]:
        """Publish persistent and mandatory; the future completes when the broker confirms.

        It fails with Unroutable when nothing is bound, NotConfirmed when nacked or lost.
        """

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge; safe from any thread. An ack for a dead connection is dropped (redelivered)."""

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        """Reject; safe from any thread."""

    def queue_depth(self, queue: str) -> tuple[int, int] | None:
        """(messages, consumers) of a queue, or None if it does not exist."""

    def stop(self) -> None:
        """Stop consuming, wait for pending confirms, close."""
