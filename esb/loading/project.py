"""Load a whole project (config, adapters, transformers, routes) and report every problem at once."""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from esb.adapters.preflight import preflight
from esb.adapters.spec import AdapterSpec, load_adapter
from esb.errors import ConfigError, ConfigErrors
from esb.loading.config import Settings, load_settings
from esb.loading.startcheck import start_problems
from esb.loading.yamlsource import Located, load_yaml
from esb.routes.loader import build_route, secret_warnings
from esb.routes.model import Route
from esb.runtime.topology import with_queue_settings
from esb.transform.assets import check_transformers, without_hint

YAML = ("*.yaml", "*.yml")


@dataclasses.dataclass(frozen=True)
class Project:
    root: Path
    settings: Settings
    adapters: Mapping[str, AdapterSpec]
    routes: Mapping[str, Route]
    warnings: tuple[ConfigError, ...] = ()  # not errors: the project runs (e.g. a secret a route would print)

    def route(self, name: str) -> Route:
        from esb.loading.registry import did_you_mean
        if name not in self.routes:
            hint = did_you_mean(name, sorted(self.routes))
            raise ConfigErrors([ConfigError(f"no route is named '{name}'", hint=hint)])
        return self.routes[name]


def load_project(root: str | Path = ".", env: Mapping[str, str] | None = None) -> Project:
    """Load every asset under `root`; raise ConfigErrors listing every problem in every file."""
    root = Path(root).resolve()
    env = os.environ if env is None else env
    settings, errors = _settings(root, env)
    adapters = _load_named(root, "adapters", lambda loc: _adapter(loc, root, env), errors)
    asset_errors = check_transformers(root)
    errors += asset_errors
    warnings: list[ConfigError] = []
    routes = _load_named(root, "routes", lambda loc: _route(loc, root, adapters, env, warnings), errors)
    adapters = {name: spec for name, spec in adapters.items() if spec is not None}
    errors += _duplicate_queues(routes)
    errors += start_problems(root, settings) if settings is not None else []
    if errors:
        raise ConfigErrors(_one_per_cause(errors, asset_errors))
    routes = {name: with_queue_settings(route, settings.broker_queues, settings.delivery_limit)
              for name, route in routes.items()}
    return Project(root, settings, adapters, routes, tuple(sorted(warnings, key=ConfigError.sort_key)))


def _settings(root: Path, env: Mapping[str, str]) -> tuple[Settings | None, list[ConfigError]]:
    """The settings, read once; None (and why) when config/esb.yaml is broken."""
    try:
        return load_settings(root, env), []
    except ConfigErrors as exc:
        return None, list(exc.errors)


def _adapter(located: Located, root: Path, env: Mapping[str, str]) -> tuple[AdapterSpec | None, list[ConfigError]]:
    """An adapter that loads and also opens as `esb run` will open it (files, keys, URLs)."""
    spec, errors = load_adapter(located, root, env)
    if spec is None:
        return None, errors
    problems = preflight(spec, located, root)
    return (None, problems) if problems else (spec, [])


def _route(located: Located, root: Path, adapters: Mapping, env: Mapping[str, str],
           warnings: list[ConfigError]) -> tuple[Route | None, list[ConfigError]]:
    warnings += secret_warnings(located, adapters, env)
    return build_route(located, root, adapters, env, warnings)


def asset_files(root: Path, folder: str) -> list[Path]:
    return sorted(p for pattern in YAML for p in (root / folder).glob(pattern))


def _load_named(root: Path, folder: str, build, errors: list[ConfigError]) -> dict:
    """Load each file of a folder with `build`; refuse two things with one name."""
    found: dict = {}
    for path in asset_files(root, folder):
        try:
            located = load_yaml(path, str(path.relative_to(root)))
        except ConfigErrors as exc:
            errors += exc.errors
            if folder == "adapters":  # known but broken: routes naming it get no second error
                found.setdefault(_declared_name(path), None)
            continue
        thing, problems = build(located)
        errors += problems
        if thing is None:
            name = located.data.get("name") if isinstance(located.data, dict) else None
            if isinstance(name, str) and folder == "adapters":
                found.setdefault(name, None)  # known but broken: routes naming it get no second error
            continue
        if found.get(thing.name) is not None:
            errors.append(located.error(("name",), f"the name '{thing.name}' is also used by {found[thing.name].path}",
                                        "give each file its own name"))
            continue
        found[thing.name] = thing
    return found


def _declared_name(path: Path) -> str:
    """The `name:` a file that cannot be parsed declares (read as text), else its file name."""
    match = re.search(r"^name:\s*['\"]?([A-Za-z0-9_.-]+)", path.read_text(encoding="utf-8", errors="replace"), re.M)
    return match.group(1) if match else path.stem


def _one_per_cause(errors: list[ConfigError], asset_errors: list[ConfigError]) -> list[ConfigError]:
    """Each problem once: a step that repeats a transformer file's problem at its own line, or the
    same problem found twice, is dropped (the transformer's own report names the file and line)."""
    repeated = {without_hint(e) for e in asset_errors}
    seen: set[str] = set()
    kept = []
    for error in errors:
        if (error not in asset_errors and error.message in repeated) or str(error) in seen:
            continue
        seen.add(str(error))
        kept.append(error)
    return kept


def _duplicate_queues(routes: Mapping[str, Route]) -> list[ConfigError]:
    by_queue = collections.defaultdict(list)
    for route in routes.values():
        by_queue[route.source.queue].append(route)
    return [ConfigError(f"the queue '{queue}' is consumed by routes {', '.join(r.name for r in rs)}",
                        path=rs[-1].path, line=rs[-1].line, hint="give each route its own source.queue")
            for queue, rs in by_queue.items() if len(rs) > 1]
