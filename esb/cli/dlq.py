"""`esb dlq ...`: list, show, replay and purge dead letters (rendering only; esb.runtime.dlq does the work)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from esb.cli.brokers import broker_option, resolve_broker
from esb.runtime import dlq as engine
from esb.runtime import names
from esb.runtime.connect import connected
from esb.runtime.urls import mask_url

REASON_WIDTH = 60


def project_seal(root: Path):
    """The key that proves a dead letter was written by esb (config, or var/state.key): read from
    the settings alone, not by loading (and checking) the whole project again."""
    from esb.loading.config import load_settings
    from esb.runtime.state import load_key
    return load_key(root, load_settings(root.resolve(), os.environ).state_key)


def load_route(root: Path, name: str):
    from esb.loading.project import load_project
    return load_project(root).route(name)


def _ids_or_all(ids: tuple[str, ...], everything: bool) -> None:
    if bool(ids) == everything:
        raise click.UsageError("give --id ID (repeatable) or --all")


@click.group()
def dlq() -> None:
    """Inspect, replay and purge the dead letters of a route."""


@dlq.command("list")
@click.argument("route")
@click.option("--limit", type=int, default=1000, show_default=True, help="Show at most this many.")
@broker_option
@click.pass_obj
def list_letters(root: Path, route: str, limit: int, broker_url: str | None) -> None:
    """A table of the dead letters of ROUTE (oldest first); they stay in the queue."""
    with connected(resolve_broker(root, broker_url)) as broker:
        letters = engine.browse(broker, route, limit, seal=project_seal(root))
    table = Table("id", "age", "step", "error class", "reason")
    for letter in letters:
        table.add_row(Text(letter.id), format_age(letter.age), Text(letter.step), Text(letter.error_class),
                      Text(truncate(letter.reason, REASON_WIDTH)))
    console = Console()
    console.print(table)
    console.print(Text(f"{len(letters)} dead letter{'' if len(letters) == 1 else 's'} in "
                       f"{names.dead_letter_queue(route)}"))


@dlq.command()
@click.argument("message_id", metavar="ID")
@click.option("--route", help="Look only in this route's DLQ [default: every route of the project].")
@broker_option
@click.pass_obj
def show(root: Path, message_id: str, route: str | None, broker_url: str | None) -> None:
    """Why dead letter ID died, then its original body."""
    if route is None:
        from esb.loading.project import load_project
        routes = list(load_project(root).routes)
    else:
        routes = [route]
    with connected(resolve_broker(root, broker_url)) as broker:
        letter = engine.find(broker, routes, message_id, seal=project_seal(root))
    if letter is None:
        raise click.ClickException(f"no dead letter {message_id} in the DLQ of {', '.join(routes) or 'any route'}")
    for line in show_lines(letter):
        click.echo(line)


def show_lines(letter: engine.DeadLetter) -> Iterator[str]:
    yield f"id:            {letter.id}"
    if not letter.authentic:
        yield "sealed:        NO: not dead-lettered by esb; its esb headers are ignored, its body replays as sent"
    yield f"route:         {letter.route}"
    yield f"failed step:   {letter.step}  (step index {letter.resume_step})"
    yield f"error class:   {letter.error_class}  ({letter.exception})"
    yield f"reason:        {letter.reason}"
    yield f"attempts:      {letter.attempts}"
    yield f"first failure: {letter.first_failure}"
    yield f"last failure:  {letter.last_failure}  ({format_age(letter.age)} ago)"
    yield f"compensation:  {letter.compensation}"
    yield f"headers:       {', '.join(f'{k}={v}' for k, v in letter.headers.items()) or '-'}"
    yield ""
    yield f"body ({letter.content_type}, {len(letter.body)} bytes):"
    yield from _indented(pretty_body(letter.body, letter.content_type))
    if letter.failed_body is not None and letter.failed_body != letter.body:
        yield ""
        yield f"body at step {letter.step} ({letter.failed_content_type}, {len(letter.failed_body)} bytes):"
        yield from _indented(pretty_body(letter.failed_body, letter.failed_content_type or ""))


def pretty_body(body: bytes, content_type: str) -> str:
    """JSON indented (numbers digit for digit), XML indented, text as it is, binary summarised."""
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind.endswith("json"):
            from esb.transform import jsoncodec
            return jsoncodec.dumps(jsoncodec.loads(body), indent=2)
        if kind.endswith("xml"):
            from lxml import etree

            from esb.transform.safexml import parse_xml
            return etree.tostring(parse_xml(body), pretty_print=True, encoding="unicode").rstrip("\n")
        if kind.startswith("text/"):
            return body.decode("utf-8")
    except Exception:  # noqa: BLE001 - a body that does not parse is shown as it came
        pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(body)} bytes of binary data: {body[:32].hex()}{'…' if len(body) > 32 else ''}>"


def _indented(text: str) -> Iterator[str]:
    yield from ("  " + line for line in text.splitlines() or [""])


@dlq.command()
@click.argument("route")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Replay this dead letter (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter of ROUTE.")
@click.option("--from-step", metavar="LABEL",
              help="Resume at the failed step LABEL with the body it had there, instead of from the start.")
@broker_option
@click.pass_obj
def replay(root: Path, route: str, ids: tuple[str, ...], everything: bool, from_step: str | None,
           broker_url: str | None) -> None:
    """Send dead letters of ROUTE back to its queue, after the fix."""
    _ids_or_all(ids, everything)
    url, model = resolve_broker(root, broker_url), load_route(root, route)
    console = Console(stderr=True)  # stdout says only how many were replayed
    with connected(url) as broker, Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                                            console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("replay", total=len(ids) or None)
        count = engine.replay(broker, route, ids=ids, replay_all=everything, from_step=from_step, route_model=model,
                              progress=lambda done, total: bar.update(task, completed=done, total=total),
                              seal=project_seal(root))
    click.echo(f"replayed {count}")


@dlq.command()
@click.argument("route")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Delete this dead letter (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Delete every dead letter of ROUTE.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@broker_option
@click.pass_obj
def purge(root: Path, route: str, ids: tuple[str, ...], everything: bool, yes: bool, broker_url: str | None) -> None:
    """Delete dead letters of ROUTE for good."""
    _ids_or_all(ids, everything)
    url = resolve_broker(root, broker_url)
    what = "every dead letter" if everything else f"{len(ids)} dead letter{'' if len(ids) == 1 else 's'}"
    if not yes:
        click.confirm(f"delete {what} of {route} from {mask_url(url)}?", abort=True)
    with connected(url) as broker:
        count = engine.purge(broker, route, None if everything else ids, seal=project_seal(root))
    click.echo(f"purged {count}")


def format_age(age: datetime.timedelta | None) -> str:
    """3s, 5m, 2h 03m, 4d 07h: how long ago, roughly."""
    if age is None:
        return "?"
    seconds = max(int(age.total_seconds()), 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days}d {hours % 24:02d}h"
    if hours:
        return f"{hours}h {minutes % 60:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
