"""`${VAR}` and `${VAR:-default}` in asset files, filled from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from esb.errors import ConfigError
from esb.loading.yamlsource import Located

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(located: Located, env: Mapping[str, str]) -> tuple[Any, set[tuple], list[ConfigError]]:
    """Return the data with variables filled in, the paths that used one, and unresolved ones."""
    used: set[tuple] = set()
    errors: list[ConfigError] = []

    def fill(value: Any, at: tuple) -> Any:
        if isinstance(value, dict):
            return {k: fill(v, at + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, at + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            used.add(at)
            return _VAR.sub(lambda m: _lookup(m, env, located, at, errors), value)
        return value

    return fill(located.data, ()), used, errors


def _lookup(match: re.Match, env: Mapping[str, str], located: Located, at: tuple,
            errors: list[ConfigError]) -> str:
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return default
    errors.append(located.error(at, f"the variable ${{{name}}} is not set",
                                f"export {name}=... before starting esb (the demo's: esb --env-file config/demo.env)"))
    return ""


def unrepeated(variable_errors: list[ConfigError], problems: list[ConfigError]) -> list[ConfigError]:
    """`problems` without those at a value whose variable is unset: one cause, one error."""
    unset = {(e.path, e.line, e.col) for e in variable_errors}
    return [p for p in problems if (p.path, p.line, p.col) not in unset]
