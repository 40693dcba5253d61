"""`esb reload`: make the running `esb run` of this project load its files again, and say how it went."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import click

from esb.runtime.reload import PID_FILE, statuses

WAIT = 60.0  # a swap waits for the swapped routes' in-flight messages (at most their drain time)


@click.command()
@click.option("--wait", "wait", type=click.FloatRange(min=0), default=WAIT, show_default=True,
              help="Seconds to wait for every worker's answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the workers' answers as JSON.")
@click.pass_obj
def reload(root: Path, wait: float, as_json: bool) -> None:
    """Reload routes/, adapters/, transformers/ and config/ in the running `esb run` (SIGHUP).

    The project is validated whole first: if it does not load, the running routes go on unchanged
    and each problem is printed (exit 1). Otherwise only the routes the change affects are swapped,
    between messages.
    """
    from esb.observability import audit
    root = root.resolve()
    pid = _running_pid(root)
    with audit.for_project(root).action("reload", what={"pid": pid}) as act:  # no log line: no reload
        asked = time.time()
        os.kill(pid, signal.SIGHUP)
        answers = _answers(root, asked, wait)
        act.result = {"workers": [{k: a[k] for k in ("pid", "outcome", "config_hash", "swapped", "errors")}
                                  for a in answers]}
        if not answers or any(answer["outcome"] == "refused" for answer in answers):
            act.outcome = "refused" if answers else "no answer"
    if as_json:
        click.echo(json.dumps(answers, indent=2))
    for answer in [] if as_json else answers:
        _print(answer)
    if not answers:
        raise click.ClickException(f"esb run (pid {pid}) did not answer within {wait:g} s; its log says why")
    if any(answer["outcome"] == "refused" for answer in answers):
        raise SystemExit(1)


def _running_pid(root: Path) -> int:
    try:
        pid = int((root / PID_FILE).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        raise click.ClickException(f"no `esb run` is running for {root} ({PID_FILE} names no live process)") \
            from None


def _answers(root: Path, asked: float, wait: float) -> list[dict]:
    """Every worker's status once each has answered since `asked` (or what there is at the deadline)."""
    deadline = time.monotonic() + wait
    while True:
        found = statuses(root)
        if found and all(status["at"] >= asked for status in found):
            return found
        if time.monotonic() >= deadline:
            return [status for status in found if status["at"] >= asked]
        time.sleep(0.1)


def _print(answer: dict) -> None:
    who = f"worker {answer['pid']}"
    if answer["outcome"] == "refused":
        click.echo(f"{who}: refused; the running routes go on (config {answer['config_hash']})", err=True)
        for error in answer["errors"]:
            click.echo(f"  {error}", err=True)
    elif answer["outcome"] == "unchanged":
        click.echo(f"{who}: nothing changed (config {answer['config_hash']})")
    else:
        swapped = ", ".join(answer["swapped"]) or "no route"
        click.echo(f"{who}: reloaded, swapped {swapped} (config {answer['config_hash']})")
