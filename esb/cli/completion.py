"""Shell completion of route names: `eval "$(_ESB_COMPLETE=bash_source esb)"` (zsh_source, fish_source)."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.shell_completion import CompletionItem

# A route's `name:` at the top of its file; read line by line, as a TAB must answer at once and a
# half-edited project must still complete (loading it would check every file and could refuse).
_NAME = re.compile(r"""^name:[ \t]*(["']?)([^"'#\s]+)\1[ \t]*(?:#.*)?$""", re.MULTILINE)


def route_names(root: Path) -> list[str]:
    """The names of the routes in root/routes/*.yaml, read without loading the project."""
    names = []
    for path in sorted([*(root / "routes").glob("*.yaml"), *(root / "routes").glob("*.yml")]):
        try:
            found = _NAME.search(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        names.append(found.group(2) if found else path.stem)
    return sorted(set(names))


def complete_route(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """click's shell_complete for a ROUTE argument or --route option: the project's route names."""
    root = ctx.find_root().params.get("root") or Path(".")
    return [CompletionItem(name) for name in route_names(Path(root)) if name.startswith(incomplete)]
