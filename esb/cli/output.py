"""How commands print: rich tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import sys
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import click
from rich.console import Console

from esb.transform import jsoncodec

# rich measures a table to the terminal, and to 80 columns when stdout is a pipe or a file, which
# folds a long queue or source name onto several rows that `grep` and `awk` then see apart.
UNLIMITED = 100_000

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON for scripts (stable keys, no table) instead of a table.")


def console() -> Console:
    """A console as wide as the terminal, or as wide as each line needs when stdout is not a terminal."""
    tty = sys.stdout.isatty()
    return Console(width=None if tty else UNLIMITED, soft_wrap=not tty, highlight=False)


def echo_json(value: Any) -> None:
    """`value` as indented JSON on stdout; Decimals digit for digit, never through float."""
    click.echo(jsoncodec.dumps(plain(value), indent=2))


def plain(value: Any) -> Any:
    """JSON's types only: read-only mappings, tuples, paths and dataclasses become dicts, lists, text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, (dict, MappingProxyType)):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return Decimal(repr(value))  # a setting's seconds (2.0, 0.5), written as Python shows them
    if value is None or isinstance(value, (str, int, bool, Decimal)):
        return value
    return str(value)  # paths and anything else: their text
