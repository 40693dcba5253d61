"""`esb status`: each route's queue depth, consumers, dead letters and retrying messages."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from esb.cli.brokers import broker_option, resolve_broker
from esb.cli.output import console, echo_json, json_option
from esb.runtime.connect import connected
from esb.runtime.status import status as route_statuses
from esb.runtime.urls import mask_url


@click.command()
@broker_option
@json_option
@click.pass_obj
def status(root: Path, broker_url: str | None, as_json: bool) -> None:
    """A table of the project's routes as the broker sees them ('-': the queue does not exist yet).

    With --json: {"broker": URL without its password, "routes": [{"route", "queue", "depth", "consumers",
    "dlq", "retrying"}]}, null where a queue does not exist yet."""
    from esb.loading.project import load_project
    project = load_project(root)
    url = resolve_broker(root, broker_url)
    with connected(url) as broker:
        rows = route_statuses(broker, project)
    if as_json:
        echo_json({"broker": mask_url(url), "routes": [
            {"route": row.route, "queue": row.queue, "depth": row.messages, "consumers": row.consumers,
             "dlq": row.dead_letters, "retrying": row.retrying} for row in rows]})
        return
    table = Table("route", "queue", "depth", "consumers", "dlq", "retrying", title=Text(mask_url(url)))
    for row in rows:
        table.add_row(Text(row.route), Text(row.queue), _count(row.messages), _count(row.consumers),
                      _count(row.dead_letters), str(row.retrying))
    console().print(table)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
