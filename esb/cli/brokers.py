"""Which broker a command talks to: --broker, else ESB_BROKER_URL / broker.url; never a silent default.

An unset broker used to mean the embedded memory:// broker, which lives only inside one process:
`esb run` then consumed nothing anyone published, and `esb send`, `status` and `dlq` saw an empty
broker. Now the embedded broker runs only when asked for by name (`--broker memory://`).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from esb.errors import ConfigError

broker_option = click.option("--broker", "broker_url", default=None, metavar="URL",
                             help="Broker URL [default: ESB_BROKER_URL, else broker.url of config/esb.yaml]; "
                                  "memory:// is the embedded broker of this one process.")
NO_BROKER = ("no broker is set: set ESB_BROKER_URL (e.g. amqp://USER:PASSWORD@HOST:5672/VHOST) or pass --broker; "
             "`--broker memory://` runs the embedded broker, which only this process can reach")


def resolve_broker(root: Path, given: str | None) -> str:
    """--broker, else the project's setting (config/esb.yaml, ESB_BROKER_URL); a ConfigError when neither is set."""
    from esb.loading.config import load_settings, unknown_variables
    for problem in unknown_variables(root.resolve(), os.environ):
        click.echo(str(problem), err=True)
    if given:
        return given
    url = load_settings(root.resolve(), os.environ).broker_url
    if not url:
        raise ConfigError(NO_BROKER)
    return url
