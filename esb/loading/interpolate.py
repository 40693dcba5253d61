"""`${VAR}` and `${VAR:-default}` in asset files, filled from the environment."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from esb.errors import ConfigError
from esb.loading.secrets import MASK
from esb.loading.yamlsource import Located

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(located: Located, env: Mapping[str, str],
                hide: Callable[[str, str], bool] | None = None) -> tuple[Any, set[tuple], list[ConfigError]]:
    """Return the data with variables filled in, the paths that used one, and unresolved ones.

    A variable for which `hide(name, value)` holds is filled in as *** (a route never needs a
    credential: those belong to adapters, and what a route holds reaches logs and dead letters).
    """
    used: set[tuple] = set()
    errors: list[ConfigError] = []

    def fill(value: Any, at: tuple) -> Any:
        if isinstance(value, dict):
            return {k: fill(v, at + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, at + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            used.add(at)
            return _VAR.sub(lambda m: _hidden(m.group(1), _lookup(m, env, located, at, errors), hide), value)
        return value

    return fill(located.data, ()), used, errors


def _hidden(name: str, value: str, hide: Callable[[str, str], bool] | None) -> str:
    return MASK if hide is not None and value and hide(name, value) else value


def hidden_variables(located: Located, env: Mapping[str, str],
                     hide: Callable[[str, str], bool]) -> list[tuple[tuple, str]]:
    """(path, variable name) of each `${VAR}` that `hide` masks, for a warning at its line."""
    found = []

    def walk(value: Any, at: tuple) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, at + (k,))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, at + (i,))
        elif isinstance(value, str):
            found.extend((at, m.group(1)) for m in _VAR.finditer(value)
                         if (filled := env.get(m.group(1), m.group(2))) and hide(m.group(1), filled))
    walk(located.data, ())
    return found


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
