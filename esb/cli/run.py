"""`esb run`: consume and process the project's routes until stopped."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from esb.errors import ConfigError, ConfigErrors
from esb.loading.project import load_project
from esb.loading.startcheck import broker_url_problem

DRAIN_TIMEOUT = 30.0


@click.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default: config, else one per core).")
@click.option("--broker", "broker_url", default=None, help="Broker URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2F")
@click.option("--route", "routes", multiple=True, help="Run only this route (repeatable).")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=DRAIN_TIMEOUT, show_default=True,
              help="Seconds SIGTERM/Ctrl-C waits for in-flight messages before the worker exits regardless.")
@click.pass_context
def run(ctx: click.Context, workers: int | None, broker_url: str | None, routes: tuple[str, ...],
        drain_timeout: float) -> None:
    """Run the routes; Ctrl-C or SIGTERM drains in-flight messages and exits."""
    from esb.cli.routes import print_problems

    # A project that does not load will not load on a restart either: exit 2 ("cannot start"),
    # checked once here, before any worker process exists to crash-loop.
    from esb.runtime.supervisor import CANNOT_START, run_worker, supervise
    root: Path = ctx.obj.resolve()
    try:
        project = load_project(root)  # the same checks as `esb routes validate`
        for name in routes:
            project.route(name)
        if broker_url is not None and (problem := broker_url_problem(broker_url)):
            raise ConfigErrors([ConfigError(f"--broker: the broker url {problem}")])
    except ConfigErrors as exc:
        print_problems(exc.errors, err=True)
        click.echo("esb run: not started (fix the problems above; `esb routes validate` lists them)", err=True)
        ctx.exit(CANNOT_START)
    print_problems(list(project.warnings), err=True, count=False)
    count = workers or project.settings.workers or os.cpu_count() or 1
    if count == 1:
        run_worker(root, broker_url, list(routes) or None, drain_timeout)
    else:
        log_level = ctx.find_root().params.get("log_level") or "info"
        command = worker_command(root, log_level, broker_url, routes, drain_timeout)
        ctx.exit(supervise(command, count, drain_timeout))


def worker_command(root: Path, log_level: str, broker_url: str | None, routes: tuple[str, ...],
                   drain_timeout: float = DRAIN_TIMEOUT) -> list[str]:
    """The command line of one worker process: this `esb run` with one worker."""
    command = [sys.executable, "-m", "esb.cli.main", "--root", str(root), "--log-level", log_level, "run",
               "--workers", "1"]
    command += ["--broker", broker_url] if broker_url else []
    command += ["--drain-timeout", str(drain_timeout)] if drain_timeout != DRAIN_TIMEOUT else []
    for route in routes:
        command += ["--route", route]
    return command
