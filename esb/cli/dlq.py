"""`esb dlq ...`: list, show, replay and purge dead letters (rendering only; esb.runtime.dlq does the work)."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from esb.cli.audit import SINCE
from esb.cli.brokers import broker_option, resolve_broker
from esb.cli.completion import complete_route
from esb.cli.output import console as wide_console
from esb.observability import audit
from esb.runtime import dlq as engine
from esb.runtime import names
from esb.runtime.connect import connected
from esb.runtime.urls import mask_url

REASON_WIDTH = 60


def settings(root: Path):
    from esb.loading.config import load_settings
    return load_settings(root.resolve(), os.environ)


def project_seal(root: Path):
    """The key that proves a dead letter was written by esb (config, or var/state.key): read from
    the settings alone, not by loading (and checking) the whole project again."""
    from esb.runtime.state import load_key
    return load_key(root, settings(root).state_key)


def replay_ledger(root: Path):
    from esb.runtime.replays import ReplayLedger
    return ReplayLedger(root / settings(root).replay_ledger)


def load_route(root: Path, name: str):
    from esb.loading.project import load_project
    return load_project(root).route(name)


def _ids_or_all(ids: tuple[str, ...], everything: bool) -> None:
    if bool(ids) == everything:
        raise click.UsageError("give --id ID (repeatable) or --all")


json_option = click.option("--json", "as_json", is_flag=True, help="Machine output: JSON with stable keys, no table.")


@click.group()
def dlq() -> None:
    """Inspect, replay and purge the dead letters of a route."""


@dlq.command("list")
@click.argument("route", shell_complete=complete_route)
@click.option("--limit", type=int, default=1000, show_default=True, help="Show at most this many.")
@json_option
@broker_option
@click.pass_obj
def list_letters(root: Path, route: str, limit: int, as_json: bool, broker_url: str | None) -> None:
    """A table of the dead letters of ROUTE (oldest first); they stay in the queue."""
    with connected(resolve_broker(root, broker_url)) as broker:
        letters = engine.browse(broker, route, limit, seal=project_seal(root))
    if as_json:
        click.echo(json.dumps([letter_json(letter) for letter in letters], ensure_ascii=False, indent=2))
        return
    table = Table("id", "age", "step", "error class", "reason")
    for letter in letters:
        table.add_row(Text(letter.id), format_age(letter.age), Text(letter.step), Text(letter.error_class),
                      Text(truncate(letter.reason, REASON_WIDTH)))
    console = wide_console()
    console.print(table)
    console.print(Text(f"{len(letters)} dead letter{'' if len(letters) == 1 else 's'} in "
                       f"{names.dead_letter_queue(route)}"))


@dlq.command()
@click.argument("message_id", metavar="ID")
@click.option("--route", help="Look only in this route's DLQ [default: every route of the project].")
@json_option
@broker_option
@click.pass_obj
def show(root: Path, message_id: str, route: str | None, as_json: bool, broker_url: str | None) -> None:
    """Why dead letter ID (or the one whose id starts with ID) died, then its original body."""
    if route is None:
        from esb.loading.project import load_project
        routes = list(load_project(root).routes)
    else:
        routes = [route]
    with connected(resolve_broker(root, broker_url)) as broker:
        found = engine.candidates(broker, routes, message_id, seal=project_seal(root)) if message_id else []
    letter = _one(found, message_id, routes)
    if as_json:
        click.echo(json.dumps(letter_json(letter, full=True), ensure_ascii=False, indent=2))
        return
    for line in show_lines(letter):
        click.echo(line)


def _one(found: list[engine.DeadLetter], message_id: str, routes: list[str]) -> engine.DeadLetter:
    """The one dead letter an id (or id prefix) names: copies of one letter count once."""
    named = sorted({(letter.route, letter.id) for letter in found})
    if not named:
        raise click.ClickException(f"no dead letter {message_id} in the DLQ of {', '.join(routes) or 'any route'}")
    if len(named) > 1:
        listed = "\n".join(f"  {letter_id}  (route {route})" for route, letter_id in named)
        raise click.ClickException(f"the id prefix '{message_id}' names {len(named)} dead letters; "
                                   f"give more of the id:\n{listed}")
    return found[0]


def letter_json(letter: engine.DeadLetter, *, full: bool = False) -> dict:
    """A dead letter as machine output: these keys, always (null when unknown); bodies as UTF-8 text
    or, when not UTF-8, base64 (`body_encoding` says which)."""
    age = letter.age
    summary = {"id": letter.id, "route": letter.route, "sealed": letter.authentic, "step": letter.step,
               "error_class": letter.error_class, "reason": letter.reason, "attempts": letter.attempts,
               "first_failure": letter.first_failure or None, "last_failure": letter.last_failure or None,
               "age_seconds": None if age is None else int(age.total_seconds()), "compensation": letter.compensation}
    if not full:
        return summary
    body, encoding = _text_or_base64(letter.body)
    failed_body, failed_encoding = (None, None) if letter.failed_body is None else _text_or_base64(letter.failed_body)
    return {**summary, "exception": letter.exception, "resume_step": letter.resume_step,
            "headers": {str(k): _plain(v) for k, v in letter.headers.items()}, "content_type": letter.content_type,
            "body": body, "body_encoding": encoding, "failed_body": failed_body,
            "failed_body_encoding": failed_encoding, "failed_content_type": letter.failed_content_type}


def _text_or_base64(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64"


def _plain(value: Any) -> Any:
    """A header value as JSON can hold it: bytes as text (or base64), times in ISO, others as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        text, encoding = _text_or_base64(bytes(value))
        return text if encoding == "utf-8" else f"base64:{text}"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)  # Decimal digit for digit, and anything else


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
@click.argument("route", shell_complete=complete_route)
@click.option("--id", "ids", multiple=True, metavar="ID", help="Replay this dead letter (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter of ROUTE (that the filters keep).")
@click.option("--error-class", "error_classes", multiple=True, metavar="CLASS",
              help="Only dead letters of this error class: permanent, transient, retries_exhausted, ... (repeatable).")
@click.option("--step", "steps", multiple=True, metavar="LABEL",
              help="Only those that failed at this step (repeatable).")
@click.option("--since", type=SINCE,
              help="Only those dead-lettered at or after TIME: 2025-05-01T09:00 (UTC), or an age: 2h, 7d.")
@click.option("--from-step", metavar="LABEL",
              help="Resume at the failed step LABEL with the body it had there, instead of from the start.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; touch nothing.")
@click.option("--again", is_flag=True, help="Replay dead letters that were replayed before, too.")
@broker_option
@click.pass_obj
def replay(root: Path, route: str, ids: tuple[str, ...], everything: bool, error_classes: tuple[str, ...],
           steps: tuple[str, ...], since: datetime.datetime | None, from_step: str | None, dry_run: bool, again: bool,
           broker_url: str | None) -> None:
    """Send dead letters of ROUTE back to its queue, after the fix; each is replayed once unless --again.

    Exit status 1 when a dead letter asked for was not replayed (replayed before, or not in the DLQ)."""
    selection = engine.Selection(frozenset(ids), frozenset(error_classes), frozenset(steps), since)
    if (everything and ids) or (selection.is_everything and not everything):
        raise click.UsageError("give --id ID (repeatable), a filter (--error-class, --step, --since) or --all")
    url, model = resolve_broker(root, broker_url), load_route(root, route)
    what = {"ids": sorted(ids), "all": everything, "error_class": sorted(error_classes), "step": sorted(steps),
            "since": since.isoformat() if since else None, "from_step": from_step, "again": again}
    options = {"from_step": from_step, "route_model": model, "seal": project_seal(root), "again": again,
               "user": audit.who()}
    with audit.for_project(root).action("replay", route=route, what=what, dry_run=dry_run) as act, \
            connected(url) as broker, contextlib.closing(replay_ledger(root)) as ledger:
        options["ledger"] = ledger
        try:
            report = (engine.plan(broker, route, selection, **options) if dry_run
                      else _replay_with_progress(broker, route, selection, options))
        except engine.ReplayFailed as exc:
            act.result = _result(exc.report or engine.ReplayReport())
            raise
        act.result = _result(report)
    _render(report, names.dead_letter_queue(route), dry_run)
    if report.skipped or report.missing:
        raise click.exceptions.Exit(1)


def _replay_with_progress(broker, route: str, selection: engine.Selection, options: dict) -> engine.ReplayReport:
    console = Console(stderr=True)  # stdout says only what was replayed
    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task("replay", total=len(selection.ids) or None)
        return engine.replay_report(broker, route, selection,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                                    **options)


def _result(report: engine.ReplayReport) -> dict:
    return {"count": report.count, "ids": [letter.id for letter in report.replayed],
            "skipped": [letter.id for letter, _ in report.skipped], "missing": [i for i, _ in report.missing]}


def _render(report: engine.ReplayReport, queue: str, dry_run: bool) -> None:
    """Skipped and missing dead letters on stderr, one sentence each; what moved on stdout."""
    for letter, earlier in report.skipped:
        click.echo(f"{letter.id} (dead-lettered {letter.died}) was already replayed at {earlier.replayed_at} by "
                   f"{earlier.user}: it stays in {queue}; give --again to replay it again", err=True)
    for message_id, earlier in report.missing:
        since = f": it was replayed at {earlier.replayed_at} by {earlier.user}" if earlier else ""
        click.echo(f"{message_id} is not in {queue}{since}", err=True)
    if dry_run:
        for letter in report.replayed:
            click.echo(f"would replay {letter.id}  (step {letter.step or '-'}, {letter.error_class}, "
                       f"dead-lettered {letter.last_failure or '-'})")
        click.echo(f"would replay {report.count}")
    else:
        click.echo(f"replayed {report.count}")


@dlq.command()
@click.argument("route", shell_complete=complete_route)
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
    with audit.for_project(root).action("purge", route=route, what={"ids": sorted(ids), "all": everything}) as act, \
            connected(url) as broker:
        count = engine.purge(broker, route, None if everything else ids, seal=project_seal(root))
        act.result = {"count": count}
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
