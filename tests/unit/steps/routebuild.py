"""Build a one-route project in tmp_path for step tests: `build, route_with = route_builders(HEAD)`."""

from __future__ import annotations

import json

from esb.loading.yamlsource import parse_yaml
from esb.routes.loader import build_route


def route_builders(head: str):
    """`build(tmp_path, steps, files)` -> (route, errors); `route_with(...)` -> a route that must load."""

    def build(tmp_path, steps: str, files: dict | None = None):
        for name, text in (files or {}).items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text if isinstance(text, str) else json.dumps(text))  # a dict: a JSON file
        return build_route(parse_yaml(head + steps, "r.yaml"), tmp_path, {}, {})

    def route_with(tmp_path, steps: str, files: dict | None = None):
        route, errors = build(tmp_path, steps, files)
        assert errors == []
        return route

    return build, route_with
