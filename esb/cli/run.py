"""`esb run`: consume and process the project's routes until stopped."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import click
import structlog

from esb.cli.brokers import NO_BROKER, broker_option
from esb.cli.completion import complete_route
from esb.errors import ConfigError, ConfigErrors
from esb.loading.project import load_project
from esb.loading.startcheck import broker_url_problem

DRAIN_TIMEOUT = 30.0


@click.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default: config, else one per core).")
@broker_option
@click.option("--route", "routes", multiple=True, shell_complete=complete_route,
              help="Run only this route (repeatable).")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=DRAIN_TIMEOUT, show_default=True,
              help="Seconds SIGTERM/Ctrl-C waits for in-flight messages before the worker exits regardless.")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT|off",
              help="Where to serve /metrics, /healthz and /readyz (default: config metrics.listen, 127.0.0.1:9464).")
@click.option("--pollers/--no-pollers", default=None,
              help="Run every SFTP inbound poller, or none [default: those that feed the routes that run].")
@click.option("--supervised", is_flag=True, hidden=True)  # a worker process of `esb run --workers N`
@click.pass_context
def run(ctx: click.Context, workers: int | None, broker_url: str | None, routes: tuple[str, ...],
        drain_timeout: float, metrics_listen: str | None, pollers: bool | None, supervised: bool) -> None:
    """Run the routes; Ctrl-C or SIGTERM drains in-flight messages and exits."""
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
        if not (broker_url or project.settings.broker_url):
            raise ConfigErrors([ConfigError(NO_BROKER)])
    except ConfigErrors as exc:
        _report(ctx, exc.errors, "esb run: not started (fix the problems above; `esb routes validate` lists them)")
        ctx.exit(CANNOT_START)
    from esb.loading.config import unknown_variables
    _report(ctx, [*project.warnings, *unknown_variables(root, os.environ)])
    count = workers or project.settings.workers or os.cpu_count() or 1
    # a worker of a supervisor never serves: it counts into the supervisor's folder, if there is one
    listen = "off" if supervised else metrics_listen or project.settings.metrics_listen
    if not supervised:
        ctx.with_resource(_pid_file(root))  # `esb reload` signals the process it names
    if count == 1:
        try:
            run_worker(root, broker_url, list(routes) or None, drain_timeout, listen, pollers,
                       webhooks=not supervised)
        except ConfigError as exc:
            _report(ctx, [exc], "esb run: not started")
            ctx.exit(CANNOT_START)
    else:
        log_level = ctx.find_root().params.get("log_level") or "info"
        command = worker_command(root, log_level, broker_url, routes, drain_timeout, pollers)
        with _served_for_workers(ctx, listen, count) as on_death, \
                _webhooks_for_workers(ctx, project, broker_url, routes):
            code = supervise(command, count, drain_timeout, on_death=on_death)
        ctx.exit(code)


@contextlib.contextmanager
def _pid_file(root: Path):
    from esb.runtime.reload import PID_FILE
    path = root / PID_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):  # not one a later `esb run` wrote
                path.unlink()


@contextlib.contextmanager
def _served_for_workers(ctx: click.Context, listen: str, count: int):
    """The supervisor serves the workers' metrics from files they write in a directory of its own."""
    if listen == "off":
        yield None
        return
    from esb.observability import MULTIPROC_ENV
    with tempfile.TemporaryDirectory(prefix="esb-metrics-") as folder:
        os.environ[MULTIPROC_ENV] = folder  # before any worker starts and before the registry is built
        from prometheus_client import multiprocess

        from esb.observability.server import serve
        try:
            serve(listen, count)
        except ConfigError as exc:
            _report(ctx, [exc], "esb run: not started")
            raise SystemExit(2) from None  # CANNOT_START: restarting cannot help
        yield multiprocess.mark_process_dead


@contextlib.contextmanager
def _webhooks_for_workers(ctx: click.Context, project, broker_url: str | None, routes: tuple[str, ...]):
    """With N workers only one process can listen on http.listen: the supervisor serves the webhook
    routes (source.http) itself, on a broker connection of its own, and the workers consume them."""
    if not any(project.routes[n].source.http for n in routes or project.routes):
        yield
        return
    from esb.inbound.http import serve_webhooks
    from esb.runtime.connect import make_broker
    broker = make_broker(broker_url or project.settings.broker_url, project.settings.heartbeat)
    broker.start()
    try:
        server = serve_webhooks(project, broker, list(routes) or None)
    except ConfigError as exc:
        broker.stop()
        _report(ctx, [exc], "esb run: not started")
        raise SystemExit(2) from None  # CANNOT_START
    try:
        yield
    finally:
        server.stop()
        broker.stop()


def _report(ctx: click.Context, problems: list[ConfigError], verdict: str | None = None) -> None:
    """Start-up problems on stderr: plain lines, or JSON log lines when logging.format is json
    (a log shipper then reads one format from start to end)."""
    from esb.cli.routes import print_problems
    if ctx.meta.get("log_format") != "json":
        print_problems(problems, err=True, count=False)
        if verdict:
            click.echo(verdict, err=True)
        return
    log = structlog.get_logger("esb.run")
    for problem in problems:
        log.error("config_problem", problem=str(problem), path=problem.path, line=problem.line)
    if verdict:
        log.error("not_started", reason=verdict)


def worker_command(root: Path, log_level: str, broker_url: str | None, routes: tuple[str, ...],
                   drain_timeout: float = DRAIN_TIMEOUT, pollers: bool | None = None) -> list[str]:
    """The command line of one worker process: this `esb run` with one worker."""
    command = [sys.executable, "-m", "esb.cli.main", "--root", str(root), "--log-level", log_level, "run",
               "--workers", "1", "--supervised"]
    command += ["--broker", broker_url] if broker_url else []
    command += ["--drain-timeout", str(drain_timeout)] if drain_timeout != DRAIN_TIMEOUT else []
    command += [] if pollers is None else ["--pollers" if pollers else "--no-pollers"]
    for route in routes:
        command += ["--route", route]
    return command
