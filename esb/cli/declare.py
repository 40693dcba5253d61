"""`esb declare`: declare the routes' exchanges, queues, bindings, retry tiers and DLQs without running them."""

from __future__ import annotations

from pathlib import Path

import click

from esb.cli.brokers import broker_option, resolve_broker
from esb.cli.completion import complete_route
from esb.runtime.connect import connected
from esb.runtime.urls import mask_url


@click.command()
@click.option("--route", "routes", multiple=True, shell_complete=complete_route,
              help="Declare only this route's topology (repeatable) [default: every route].")
@broker_option
@click.pass_obj
def declare(root: Path, routes: tuple[str, ...], broker_url: str | None) -> None:
    """Declare what the routes consume from and publish to, as `esb run` does at start, and exit.

    Then `esb send` reaches a route's queue before any `esb run` has started; the messages wait
    there. Declaring again is harmless; a queue declared before with other arguments is refused.
    """
    from esb.loading.project import load_project
    from esb.runtime.runtime import project_topology
    project = load_project(root)
    names = [project.route(name).name for name in routes] or list(project.routes)
    topology = project_topology(project, names)
    url = resolve_broker(root, broker_url)
    with connected(url) as broker:
        broker.declare(topology)
    for queue in topology.queues:
        click.echo(f"queue     {queue.name}")
    for name, kind in topology.exchanges:
        click.echo(f"exchange  {name} ({kind})")
    for binding in topology.bindings:
        click.echo(f"binding   {binding.exchange} --{binding.routing_key}--> {binding.queue}")
    click.echo(f"declared {_many(topology.exchanges, 'exchange')}, {_many(topology.queues, 'queue')} and "
               f"{_many(topology.bindings, 'binding')} of {_many(names, 'route')} on {mask_url(url)}")


def _many(things, word: str) -> str:
    return f"{len(things)} {word}{'' if len(things) == 1 else 's'}"
