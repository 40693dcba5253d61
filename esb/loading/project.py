"""Load a whole project (config, adapters, transformers, routes) and report every problem at once."""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from esb.adapters.spec import AdapterSpec, load_adapter
from esb.errors import ConfigError, ConfigErrors
from esb.loading.config import Settings, config_errors, load_settings
from esb.loading.yamlsource import load_yaml
from esb.routes.loader import build_route
from esb.routes.model import Route
from esb.transform.assets import check_transformers

YAML = ("*.yaml", "*.yml")


@dataclasses.dataclass(frozen=True)
class Project:
    root: Path
    settings: Settings
    adapters: Mapping[str, AdapterSpec]
    routes: Mapping[str, Route]

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
    errors = config_errors(root, env)
    adapters = _load_named(root, "adapters", lambda loc: load_adapter(loc, root, env), errors)
    errors += check_transformers(root)
    routes = _load_named(root, "routes", lambda loc: build_route(loc, root, adapters, env), errors)
    adapters = {name: spec for name, spec in adapters.items() if spec is not None}
    errors += _duplicate_queues(routes)
    if errors:
        raise ConfigErrors(errors)
    return Project(root, load_settings(root, env), adapters, routes)


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


def _duplicate_queues(routes: Mapping[str, Route]) -> list[ConfigError]:
    by_queue = collections.defaultdict(list)
    for route in routes.values():
        by_queue[route.source.queue].append(route)
    return [ConfigError(f"the queue '{queue}' is consumed by routes {', '.join(r.name for r in rs)}",
                        path=rs[-1].path, line=rs[-1].line, hint="give each route its own source.queue")
            for queue, rs in by_queue.items() if len(rs) > 1]
