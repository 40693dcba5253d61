"""The broker objects a route needs: its exchange, queue, binding, retry tiers and dead-letter queue."""

from __future__ import annotations

import dataclasses

from esb.routes.model import Route
from esb.runtime import names
from esb.runtime.broker import Binding, QueueSpec, Topology

QUEUE_TYPES = {"quorum": True, "classic": False, "auto": None}  # broker.queues -> Source.quorum


def with_queue_settings(route: Route, queues: str, delivery_limit: int) -> Route:
    """The route with the project's queue settings: its own `source.quorum`, else broker.queues
    (auto: left to the broker, which knows how many nodes it was given), and delivery.limit."""
    quorum = QUEUE_TYPES[queues] if route.source.quorum is None else route.source.quorum
    source = dataclasses.replace(route.source, quorum=quorum, delivery_limit=delivery_limit)
    return dataclasses.replace(route, source=source)


def retry_delays_ms(route: Route) -> tuple[int, ...]:
    """The delay before each redelivery, in ms; one tier queue per distinct delay. A route that never
    retries keeps one tier (its initial backoff): a copy whose key another worker holds waits there."""
    backoff = route.retry.backoff
    return tuple(int(d * 1000) for d in backoff.delays(route.retry.attempts) or (backoff.initial,))


def route_topology(route: Route) -> Topology:
    """The route's exchanges, bindings and queues. As quorum queues, the route's queue and its tiers
    carry the delivery limit, and the route's queue dead-letters to the DLQ what the broker stops
    delivering (esb dead-letters such a message itself first; see esb.runtime.resume). The DLQ has
    no limit: browsing it counts as deliveries."""
    source = route.source
    dlq = names.dead_letter_queue(route.name)
    exchanges = ((source.exchange, source.exchange_type),) if source.exchange else ()
    # "" is the default exchange: it always exists and cannot be declared
    exchanges += tuple((s.exchange, "topic") for s in route.walk() if s.kind == "publish" and s.exchange)
    ordered = route.ordering is not None
    # An ordered route has no delay tiers (a message waiting there would be overtaken by later ones
    # of its key): it retries in place. Its queue is read by one partitioner at a time, which moves
    # each message to the partition of its key (esb.runtime.ordering).
    tiers = () if ordered else tuple(
        QueueSpec(names.retry_queue(route.name, ms), quorum=source.quorum, ttl_ms=ms,
                  dead_letter_to=source.queue, delivery_limit=source.delivery_limit)
        for ms in sorted(set(retry_delays_ms(route))))
    queues = (QueueSpec(source.queue, quorum=source.quorum, dead_letter_to=dlq, delivery_limit=source.delivery_limit,
                        single_active_consumer=ordered),
              QueueSpec(dlq, quorum=source.quorum)) + tiers + partition_queues(route)
    bindings = (Binding(source.queue, source.exchange, source.binding_key),) if source.exchange else ()
    return Topology(tuple(dict.fromkeys(exchanges)), queues, bindings)


def partition_queues(route: Route) -> tuple[QueueSpec, ...]:
    """An ordered route's partitions: each consumed by one worker at a time (single active consumer)."""
    if route.ordering is None:
        return ()
    source = route.source
    return tuple(QueueSpec(names.partition_queue(route.name, i), quorum=source.quorum,
                           dead_letter_to=names.dead_letter_queue(route.name), delivery_limit=source.delivery_limit,
                           single_active_consumer=True)
                 for i in range(route.ordering.partitions))
