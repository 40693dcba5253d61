"""`esb status`: each route's queue depth, consumers, dead letters and retrying messages."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from esb.cli.brokers import broker_option, resolve_broker
from esb.runtime.connect import connected
from esb.runtime.status import status as route_statuses
from esb.runtime.urls import mask_url


@click.command()
@broker_option
@click.pass_obj
def status(root: Path, broker_url: str | None) -> None:
    """A table of the project's routes as the broker sees them ('-': the queue does not exist yet)."""
    from esb.loading.project import load_project
    project = load_project(root)
    url = resolve_broker(root, broker_url)
    table = Table("route", "queue", "depth", "consumers", "dlq", "retrying", title=Text(mask_url(url)))
    with connected(url) as broker:
        rows = route_statuses(broker, project)
    for row in rows:
        table.add_row(Text(row.route), Text(row.queue), _count(row.messages), _count(row.consumers),
                      _count(row.dead_letters), str(row.retrying))
    Console().print(table)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
