"""The one place a broker URL becomes a broker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from esb.runtime.broker import Broker


def make_broker(url: str, heartbeat: int = 30, connect_timeout: float = 15.0) -> Broker:
    """amqp:// and amqps:// go to RabbitBroker; memory:// and other kombu transports to KombuBroker.
    `connect_timeout`: how long `start` keeps trying RabbitMQ (kombu transports try once)."""
    if url.startswith(("amqp://", "amqps://")):
        from esb.runtime.rabbit import RabbitBroker
        return RabbitBroker(url, heartbeat=heartbeat, connect_timeout=connect_timeout)
    from esb.runtime.kombu_broker import KombuBroker
    return KombuBroker(url)


@contextmanager
def connected(url: str, connect_timeout: float = 5.0) -> Iterator[Broker]:
    """A started broker for one CLI command, stopped (fetched messages given back) when it ends.
    It gives up connecting sooner than a worker does: a person is waiting."""
    broker = make_broker(url, connect_timeout=connect_timeout)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
