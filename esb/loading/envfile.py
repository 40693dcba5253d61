"""Read an environment file (`NAME=value` lines), such as the demo-only config/demo.env.

Shipped assets carry no default secrets or endpoints: `${LEDGER_TOKEN}`, not
`${LEDGER_TOKEN:-demo-token}`. The demo and the route tests load their values from an
environment file given explicitly (`esb --env-file config/demo.env`, or ESB_ENV_FILE), so a
production machine that lacks a variable is told so instead of running on a demo value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from esb.errors import ConfigError, ConfigErrors

DEMO_ENV_FILE = "config/demo.env"
_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)")


def read_env_file(path: Path, shown: str | None = None) -> dict[str, str]:
    """The variables of an env file; ConfigErrors (path:line) for a line that is not NAME=value."""
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([ConfigError(f"cannot read the environment file: {exc}", path=shown)]) from None
    found: dict[str, str] = {}
    errors = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            errors.append(ConfigError("a line of an environment file must be NAME=value", path=shown,
                                      line=number, hint="write e.g. LEDGER_URL=http://127.0.0.1:8081"))
            continue
        found[match.group(1)] = _unquoted(match.group(2).strip())
    if errors:
        raise ConfigErrors(errors)
    return found


def with_env_file(env: Mapping[str, str], path: Path | None) -> dict[str, str]:
    """`env` with the file's variables added; a variable already set in `env` wins, as with docker's .env."""
    return {**(read_env_file(path) if path is not None else {}), **env}


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
