"""What `esb status` shows: each route's queues as the broker sees them."""

from __future__ import annotations

import dataclasses

from esb.runtime import names
from esb.runtime.broker import Broker
from esb.runtime.topology import retry_delays_ms


@dataclasses.dataclass(frozen=True)
class RouteStatus:
    """A route's queues on the broker; None where a queue does not exist (yet)."""

    route: str
    queue: str
    messages: int | None
    consumers: int | None
    dead_letters: int | None
    retrying: int            # messages waiting in the route's retry tiers


def status(broker: Broker, project) -> list[RouteStatus]:
    """Queue depth, consumers, dead letters and retrying messages of every route of `project`."""
    return [_route_status(broker, route) for route in project.routes.values()]


def _route_status(broker: Broker, route) -> RouteStatus:
    main = broker.queue_depth(route.source.queue)
    dead = broker.queue_depth(names.dead_letter_queue(route.name))
    tiers = [broker.queue_depth(names.retry_queue(route.name, ms)) for ms in sorted(set(retry_delays_ms(route)))]
    return RouteStatus(route.name, route.source.queue, main[0] if main else None, main[1] if main else None,
                       dead[0] if dead else None, sum(tier[0] for tier in tiers if tier))
