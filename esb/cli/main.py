"""The `esb` entry point: the click group, logging set up once, configuration problems reported."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
import structlog

from esb import __version__
from esb.cli.audit import audit
from esb.cli.declare import declare
from esb.cli.demo import demo
from esb.cli.dlq import dlq
from esb.cli.reload import reload
from esb.cli.routes import print_problems, routes
from esb.cli.run import run
from esb.cli.send import send
from esb.cli.status import status
from esb.errors import ConfigErrors, EsbError

LOG_LEVELS = ("debug", "info", "warning", "error")


class EsbGroup(click.Group):
    """Whatever the command, a configuration problem is one line each on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigErrors as exc:
            print_problems(exc.errors, err=True, count=False)
        except EsbError as exc:
            click.echo(str(exc), err=True)
        ctx.exit(1)


class _Stderr:
    """Whatever sys.stderr is at the time of writing (click's test runner swaps it)."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "warning", fmt: str = "console") -> None:
    """structlog to stderr, as `key=value` lines or JSON; the one place logging is configured."""
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso"), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        # one write() per line: the workers of `esb run --workers N` share stderr, and print()'s
        # separate write of the newline let their lines interleave mid-line
        logger_factory=structlog.WriteLoggerFactory(file=_Stderr()),
        cache_logger_on_first_use=False)


@click.group(cls=EsbGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", default=".", show_default=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The project folder holding routes/, adapters/, transformers/ and config/.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None,
              help="The least severe log lines shown on stderr [default: config for `run`, else warning].")
@click.option("--env-file", envvar="ESB_ENV_FILE", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read NAME=value lines into the environment first (variables already set win); "
                   "e.g. config/demo.env for the demo and route tests. Also ESB_ENV_FILE.")
@click.version_option(__version__, "--version", prog_name="esb")
@click.pass_context
def esb(ctx: click.Context, root: Path, log_level: str, env_file: Path | None) -> None:
    """A lightweight enterprise service bus for finance integration."""
    if env_file is not None:
        _load_env_file(env_file)
    if ctx.invoked_subcommand == "demo" and log_level is None:
        configure_logging("error")  # the demo prints what happened to each scenario itself
    elif ctx.invoked_subcommand == "run":
        # every process of `esb run` (its workers get --log-level) logs in the configured format
        settings = _settings_or_default(root)
        configure_logging(log_level or settings.log_level, settings.log_format)
        ctx.meta["log_format"] = settings.log_format
    else:
        configure_logging(log_level or "warning")
    ctx.obj = root


def _load_env_file(path: Path) -> None:
    """The file's variables join this process's environment, as with systemd's EnvironmentFile:
    every command sees them, and the worker processes of `esb run` inherit them."""
    from esb.loading.envfile import read_env_file
    try:
        found = read_env_file(path)
    except ConfigErrors as exc:
        print_problems(exc.errors, err=True, count=False)
        raise click.exceptions.Exit(1) from None
    for name, value in found.items():
        os.environ.setdefault(name, value)


def _settings_or_default(root: Path):
    from esb.loading.config import Settings, load_settings
    try:
        return load_settings(root.resolve(), os.environ)
    except EsbError:
        return Settings()


esb.add_command(routes)
esb.add_command(run)
esb.add_command(demo)
esb.add_command(dlq)
esb.add_command(send)
esb.add_command(status)
esb.add_command(reload)
esb.add_command(declare)
esb.add_command(audit)


def main() -> None:
    esb(prog_name="esb")


if __name__ == "__main__":
    main()
