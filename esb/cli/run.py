"""`esb run`: consume and process the project's routes until stopped."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from esb.loading.config import load_settings


@click.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default: config, else one per core).")
@click.option("--broker", "broker_url", default=None, help="Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2F")
@click.option("--route", "routes", multiple=True, help="Run only this route (repeatable).")
@click.pass_context
def run(ctx: click.Context, workers: int | None, broker_url: str | None, routes: tuple[str, ...]) -> None:
    """Run the routes; Ctrl-C or SIGTERM drains in-flight messages and exits."""
    from esb.runtime.supervisor import run_worker, supervise
    root: Path = ctx.obj
    settings = load_settings(root.resolve(), os.environ)
    count = workers or settings.workers or os.cpu_count() or 1
    if count == 1:
        run_worker(root.resolve(), broker_url, list(routes) or None)
    else:
        log_level = ctx.find_root().params.get("log_level") or "info"
        ctx.exit(supervise(worker_command(root.resolve(), log_level, broker_url, routes), count))


def worker_command(root: Path, log_level: str, broker_url: str | None, routes: tuple[str, ...]) -> list[str]:
    """The command line of one worker process: this `esb run` with one worker."""
    command = [sys.executable, "-m", "esb.cli.main", "--root", str(root), "--log-level", log_level, "run",
               "--workers", "1"]
    command += ["--broker", broker_url] if broker_url else []
    for route in routes:
        command += ["--route", route]
    return command
