"""`esb status`: each route's queue depth, consumers, dead letters and retrying messages."""

from __future__ import annotations

import datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from esb.cli.brokers import broker_option, resolve_broker
from esb.cli.output import console, echo_json, json_option
from esb.runtime.connect import connected
from esb.runtime.reload import statuses
from esb.runtime.status import status as route_statuses
from esb.runtime.urls import mask_url


@click.command()
@broker_option
@json_option
@click.pass_obj
def status(root: Path, broker_url: str | None, as_json: bool) -> None:
    """A table of the project's routes as the broker sees them ('-': the queue does not exist yet).

    Below it, each `esb run` worker of this project on this machine: the configuration it runs
    (a hash) and its last reload, with the problems of a refused one.

    With --json: {"broker": URL without its password, "routes": [{"route", "queue", "depth", "consumers",
    "dlq", "retrying"}], "workers": [{"pid", "outcome", "config_hash", "errors", "at"}]}, null where a
    queue does not exist yet."""
    from esb.errors import ConfigErrors
    from esb.loading.project import load_project
    workers = [{k: w[k] for k in ("pid", "outcome", "config_hash", "errors", "at")} for w in statuses(root.resolve())]
    try:
        project = load_project(root)
    except ConfigErrors as exc:  # the files are broken now; running workers may still run what loaded before
        _broken(exc, workers, as_json)
        raise SystemExit(1) from None
    url = resolve_broker(root, broker_url)
    with connected(url) as broker:
        rows = route_statuses(broker, project)
    if as_json:
        echo_json({"broker": mask_url(url), "routes": [
            {"route": row.route, "queue": row.queue, "depth": row.messages, "consumers": row.consumers,
             "dlq": row.dead_letters, "retrying": row.retrying} for row in rows], "workers": workers})
        return
    table = Table("route", "queue", "depth", "consumers", "dlq", "retrying", title=Text(mask_url(url)))
    for row in rows:
        table.add_row(Text(row.route), Text(row.queue), _count(row.messages), _count(row.consumers),
                      _count(row.dead_letters), str(row.retrying))
    out = console()
    out.print(table)
    for worker in workers:  # the `esb run` processes of this project on this machine
        out.print(Text(_worker_line(worker)))
        for error in worker["errors"] if worker["outcome"] == "refused" else []:
            out.print(Text(f"  {error}"))


def _broken(exc, workers: list[dict], as_json: bool) -> None:
    problems = [str(error) for error in exc.errors]
    if as_json:
        echo_json({"problems": problems, "workers": workers})
        return
    out = console()
    out.print(Text("The project's files do not load; the routes cannot be listed:"))
    for problem in problems:
        out.print(Text(f"  {problem}"))
    for worker in workers:
        out.print(Text(_worker_line(worker)))
    if workers:
        out.print(Text("The workers above run what loaded before: fix the files and they reload."))


def _worker_line(worker: dict) -> str:
    when = datetime.datetime.fromtimestamp(worker["at"], datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if worker["outcome"] == "refused":
        return (f"worker {worker['pid']}: the last reload ({when}) was refused; it runs config "
                f"{worker['config_hash']} from before it")
    return f"worker {worker['pid']}: config {worker['config_hash']}, {worker['outcome']} {when}"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
