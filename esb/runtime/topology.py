"""The broker objects a route needs: its exchange, queue, binding, retry tiers and dead-letter queue."""

from __future__ import annotations

from esb.routes.model import Route
from esb.runtime import names
from esb.runtime.broker import Binding, QueueSpec, Topology


def retry_delays_ms(route: Route) -> tuple[int, ...]:
    """The delay before each redelivery, in ms; one tier queue per distinct delay. A route that never
    retries keeps one tier (its initial backoff): a copy whose key another worker holds waits there."""
    backoff = route.retry.backoff
    return tuple(int(d * 1000) for d in backoff.delays(route.retry.attempts) or (backoff.initial,))


def route_topology(route: Route) -> Topology:
    source = route.source
    exchanges = ((source.exchange, source.exchange_type),) if source.exchange else ()
    exchanges += tuple((s.exchange, "topic") for s in route.walk() if s.kind == "publish")
    tiers = tuple(QueueSpec(names.retry_queue(route.name, ms), quorum=source.quorum, ttl_ms=ms,
                            dead_letter_to=source.queue)
                  for ms in sorted(set(retry_delays_ms(route))))
    queues = (QueueSpec(source.queue, quorum=source.quorum),
              QueueSpec(names.dead_letter_queue(route.name), quorum=source.quorum)) + tiers
    bindings = (Binding(source.queue, source.exchange, source.binding_key),) if source.exchange else ()
    return Topology(tuple(dict.fromkeys(exchanges)), queues, bindings)
