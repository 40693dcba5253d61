"""The RabbitMQ permissions a project's esb user needs: regular expressions naming its exchanges and queues.

RabbitMQ checks (https://www.rabbitmq.com/docs/access-control): configure for exchange.declare and
queue.declare; write on an exchange to publish to it, and on a queue to bind it; read on an exchange
to bind a queue to it, and on a queue to consume, get or purge it. esb also publishes retry states
and dead letters through the default exchange (named `amq.default` in permissions), and declares
each retry tier with the default exchange as its dead-letter exchange, which needs write on
`amq.default` and read on the tier.

`python -m esb.runtime.permissions [ROOT] [--vhost V] [--user U]` prints the rabbitmqctl command.
"""

from __future__ import annotations

import dataclasses
import re
import sys

from esb.loading.project import Project, load_project
from esb.runtime.runtime import project_topology

DEFAULT_EXCHANGE = "amq.default"
# Retry tiers follow each route's backoff; any delay matches, so changing a backoff needs no new grant.
_TIERS_AND_DLQ = r"(\.dlq|\.retry\.[0-9]+ms)?"


@dataclasses.dataclass(frozen=True)
class Permissions:
    configure: str
    write: str
    read: str

    def rabbitmqctl(self, vhost: str, user: str) -> str:
        return f"rabbitmqctl set_permissions -p {vhost} {user} '{self.configure}' '{self.write}' '{self.read}'"


def permissions(project: Project) -> Permissions:
    """Every exchange esb declares, publishes to or binds from, and every queue it declares, consumes,
    binds or purges, for all the project's routes (what one route alone needs is a subset)."""
    topology = project_topology(project, sorted(project.routes))
    exchanges = {name for name, _ in topology.exchanges} | _poller_exchanges(project)
    route_names = set(project.routes)
    # tiers and dead-letter queues are named after the route; a route may name its own queue
    other_queues = {route.source.queue for route in project.routes.values()} - route_names
    parts = [*map(_escaped, sorted(exchanges | other_queues))]
    if route_names:
        parts.append("(" + "|".join(map(_escaped, sorted(route_names))) + ")" + _TIERS_AND_DLQ)
    ours = "^(" + "|".join(parts) + ")$"
    with_default = "^(" + "|".join([_escaped(DEFAULT_EXCHANGE), *parts]) + ")$"
    return Permissions(configure=ours, write=with_default, read=ours)


def _escaped(name: str) -> str:
    """`name` as a regular expression matching itself; unlike re.escape, `-` stays as it is (readable)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", name)


def _poller_exchanges(project: Project) -> set[str]:
    """The exchanges SFTP inbound pollers publish files to."""
    return {inbound["publish_to"]["exchange"] for spec in project.adapters.values()
            for inbound in spec.inbound.values()}


def main(argv: list[str]) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m esb.runtime.permissions",
                                     description="The rabbitmqctl command granting esb's user what it needs.")
    parser.add_argument("root", nargs="?", default=".", help="the project folder (default: .)")
    parser.add_argument("--vhost", default="finance")
    parser.add_argument("--user", default="esb")
    args = parser.parse_args(argv)
    print(permissions(load_project(args.root)).rabbitmqctl(args.vhost, args.user))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

