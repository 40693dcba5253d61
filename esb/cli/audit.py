"""`esb audit`: the operator actions in the audit log (replay, purge, reload), as a table or JSON."""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from esb.cli.output import console as wide_console
from esb.observability import audit as audit_log

_AGE = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
SUMMARY_WIDTH = 70


class Since(click.ParamType):
    """A point in time: an ISO time (UTC unless it gives an offset) or an age such as 30m, 2h, 7d."""

    name = "TIME"

    def convert(self, value: Any, param, ctx) -> datetime.datetime:
        if isinstance(value, datetime.datetime):
            return value
        age = _AGE.match(str(value).strip())
        if age:
            return datetime.datetime.now(datetime.UTC) - datetime.timedelta(**{_UNIT[age[2]]: int(age[1])})
        when = audit_log.parse_time(str(value).strip())
        if when is None:
            self.fail(f"'{value}' is not a time: give an ISO time such as 2025-05-01T09:00 (UTC unless it "
                      f"says +02:00) or an age such as 30m, 2h or 7d", param, ctx)
        return when


SINCE = Since()


@click.command()
@click.option("--since", type=SINCE,
              help="Only actions started at or after TIME: 2025-05-01T09:00 (UTC), or an age: 2h, 7d.")
@click.option("--action", "actions", multiple=True, metavar="ACTION",
              help="Only this kind of action: replay, purge, reload (repeatable).")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON array of the actions, oldest first, with stable keys (see the README).")
@click.pass_obj
def audit(root: Path, since: datetime.datetime | None, actions: tuple[str, ...], as_json: bool) -> None:
    """Who replayed, purged or reloaded what, when, and how it ended, from the audit log."""
    log = audit_log.for_project(root)
    found, problems = log.actions(since=since, names=actions)
    for problem in problems:
        click.echo(problem, err=True)
    if as_json:
        click.echo(json.dumps([action.as_json() for action in found], ensure_ascii=False, indent=2, default=str))
        return
    table = Table("started (UTC)", "user", "action", "route", "what", "outcome")
    for action in found:
        table.add_row(Text(_when(action.started)), Text(f"{action.user}@{action.host}"),
                      Text(action.action + (" (dry run)" if action.dry_run else "")), Text(action.route or "-"),
                      Text(summary(action.what)), Text(_outcome(action)))
    console = wide_console()
    console.print(table)
    console.print(Text(f"{len(found)} action{'' if len(found) == 1 else 's'} in {log.path}"))


def summary(values: Any, width: int = SUMMARY_WIDTH) -> str:
    """`ids=M-1,M-2 error_class=permanent`: the set values of a what/result mapping, on one line."""
    if not isinstance(values, Mapping):
        return "" if values is None else str(values)
    parts = []
    for key, value in values.items():
        if value in (None, False, "", [], {}):
            continue
        shown = ",".join(map(str, value)) if isinstance(value, list) else ("yes" if value is True else str(value))
        parts.append(f"{key}={shown}")
    text = " ".join(parts) or "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def _outcome(action: audit_log.Action) -> str:
    result = summary(action.result)
    return action.outcome if result in ("", "-") else f"{action.outcome}: {result}"


def _when(iso: str) -> str:
    when = audit_log.parse_time(iso)
    return iso if when is None else when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
