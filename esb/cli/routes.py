"""`esb routes ...`: validate, list, show, graph, explain and test routes (rendering only)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import click
import yaml
from rich.table import Table
from rich.text import Text

from esb.adapters.kinds import ADAPTER_KINDS
from esb.cli.completion import complete_route
from esb.cli.formats import FILE_FORMATS
from esb.cli.output import console, echo_json, json_option
from esb.errors import ConfigError, ConfigErrors
from esb.loading.project import Project, load_project
from esb.loading.registry import did_you_mean
from esb.loading.secrets import MASK, mask_secrets, redact
from esb.routes import graph
from esb.routes.model import Route
from esb.routes.testing import TESTS_FOLDER, CaseResult, load_route_tests, run_route_tests
from esb.steps import STEP_KINDS
from esb.steps.base import Step

INDENT = "  "


@click.group()
def routes() -> None:
    """Validate, inspect, draw and test the routes of a project."""


@routes.command()
@click.pass_obj
def validate(root: Path) -> None:
    """Load every route, adapter and transformer as `esb run` does, and the route tests; list every problem."""
    try:
        project = load_project(root)
        load_route_tests(project)  # the route tests' files too; their cases are not run
    except ConfigErrors as exc:
        print_problems(exc.errors)
        raise click.exceptions.Exit(1) from None
    print_problems(list(project.warnings), count=False)
    click.echo(f"OK: {len(project.routes)} routes, {len(project.adapters)} adapters")


def print_problems(errors: list[ConfigError], *, err: bool = False, count: bool = True) -> None:
    """`path:line:col: what — how to fix`, one a line, then how many."""
    for error in errors:
        click.echo(str(error), err=err)
    if count:
        click.echo(f"{len(errors)} problem{'' if len(errors) == 1 else 's'}", err=err)


@routes.command("list")
@json_option
@click.pass_obj
def list_routes(root: Path, as_json: bool) -> None:
    """A table of the routes: source, steps, adapters, concurrency."""
    project = load_project(root)
    if as_json:
        echo_json({"routes": [_route_summary(route) for route in project.routes.values()]})
        return
    table = Table("route", "source", "steps", "adapters", "concurrency")
    for route in project.routes.values():
        table.add_row(Text(route.name), Text(_source(route)), str(len(list(route.walk()))),
                      Text(", ".join(route.adapters) or "-"), str(route.concurrency))
    console().print(table)


def _route_summary(route: Route) -> dict:
    """One route of `routes list --json`."""
    return {"name": route.name, "description": route.description, "source": _source_summary(route.source),
            "steps": len(list(route.walk())), "adapters": list(route.adapters), "concurrency": route.concurrency}


def _source_summary(source) -> dict:
    """The source as data; a webhook's (source.http) secret is never shown."""
    summary = dataclasses.asdict(source)
    if summary["schedule"] is None:
        del summary["schedule"]
    if summary["http"] is None:
        del summary["http"]
    else:
        summary["http"]["auth"]["secret"] = MASK if summary["http"]["auth"]["secret"] else None
    return summary


def _source(route: Route) -> str:
    source = route.source
    if source.schedule is not None:
        sc = source.schedule
        return (f"schedule '{sc.cron}' {sc.timezone}, calendar {sc.calendar}"
                f"{', catch_up' if sc.catch_up else ''} → {source.queue}")
    bound = f"{source.exchange}/{source.binding_key} → " if source.exchange else ""
    bound += f"POST {source.http.path} → " if source.http else ""
    return f"{bound}{source.queue}"


@routes.command()
@click.argument("name", shell_complete=complete_route)
@json_option
@click.pass_obj
def show(root: Path, name: str, as_json: bool) -> None:
    """One route: its source, each step with its settings, and the adapters it uses (secrets masked)."""
    project = load_project(root)
    route = project.route(name)
    secrets = frozenset().union(*(spec.secrets for spec in project.adapters.values()))
    if as_json:
        echo_json(_route_detail(project, route, secrets))
        return
    for line in _route_lines(route):
        click.echo(line)
    click.echo("steps:")
    for line in _step_lines(route.steps, 1, secrets):
        click.echo(line)
    if route.adapters:
        click.echo("adapters:")
    for line in _adapter_lines(project, route):
        click.echo(line)


def _route_detail(project: Project, route: Route, secrets: frozenset[str]) -> dict:
    """`routes show --json`: what the text shows, as data; secrets masked the same way."""
    return {**_route_summary(route), "path": route.path, "line": route.line,
            "max_body_bytes": route.max_body_bytes, "retry": dataclasses.asdict(route.retry),
            "idempotency": None if route.idempotency is None else dataclasses.asdict(route.idempotency),
            **({} if route.source.schedule is None else
               {"next_fire_times": [at.isoformat() for at in _next_fire_times(route)]}),
            "steps": [_step_detail(step, secrets) for step in route.steps],
            "adapters": [_adapter_detail(project.adapters[name]) for name in route.adapters]}


def _step_detail(step: Step, secrets: frozenset[str]) -> dict:
    branches = step.branches()
    settings = {k: v for k, v in step.settings().items() if v is not None}
    return {"label": step.label, "kind": step.kind,
            "settings": {} if branches else redact(mask_secrets(settings), secrets),
            "branches": [{"when": None if condition == graph.OTHERWISE else condition,
                          "steps": [_step_detail(s, secrets) for s in nested]} for condition, nested in branches]}


def _adapter_detail(spec) -> dict:
    return {"name": spec.name, "kind": spec.kind, "path": spec.path, "settings": spec.shown(),
            "operations": redact(mask_secrets({k: dict(v) for k, v in spec.operations.items()}), spec.secrets)}


def _route_lines(route: Route) -> Iterator[str]:
    yield f"route: {route.name}  ({route.path}:{route.line})"
    if route.description:
        yield f"description: {route.description}"
    yield f"source: {_source(route)}  (format {route.source.format})"
    if route.source.schedule is not None:
        yield "next fire times:"
        yield from (f"{INDENT}{at.isoformat()}" for at in _next_fire_times(route))
    yield f"concurrency: {route.concurrency}"
    retry = route.retry
    yield (f"retry: {retry.attempts} attempts ({retry.in_process} in process), backoff {retry.backoff.initial:g}s "
           f"×{retry.backoff.multiplier:g} up to {retry.backoff.max:g}s")
    if route.idempotency is not None:
        key = route.idempotency.key or route.idempotency.header
        yield f"idempotency: {'key' if route.idempotency.key else 'header'} {key}"


def _next_fire_times(route: Route, count: int = 5) -> list:
    from datetime import UTC, datetime

    from esb.runtime.schedule import next_fire_times
    assert route.source.schedule is not None
    return next_fire_times(route.source.schedule, datetime.now(UTC), count)


def _step_lines(steps: tuple[Step, ...], depth: int, secrets: frozenset[str] = frozenset()) -> Iterator[str]:
    pad = INDENT * depth
    for step in steps:
        what = f"{step.adapter}.{step.operation}" if step.kind == "to" else ""
        yield f"{pad}- {step.label}  {step.kind}  {what}".rstrip()
        branches = step.branches()
        if not branches:  # a choice's settings repeat its conditions, which head its branches below
            settings = {k: v for k, v in step.settings().items() if v is not None}
            yield from _indented(as_yaml(redact(mask_secrets(settings), secrets)), depth + 2)
        for condition, nested in branches:
            yield f"{pad}{INDENT * 2}{'' if condition == graph.OTHERWISE else 'when '}{condition}:"
            yield from _step_lines(nested, depth + 3, secrets)


def _adapter_lines(project: Project, route: Route) -> Iterator[str]:
    for name in route.adapters:
        spec = project.adapters[name]
        yield f"{INDENT}- {spec.name}  {spec.kind}  ({spec.path})"
        yield from _indented(as_yaml(spec.shown()), 3)
        yield f"{INDENT * 3}operations: {', '.join(spec.operations)}"


def _indented(text: str, depth: int) -> Iterator[str]:
    if text.strip() in ("{}", "[]", ""):
        return
    yield from (INDENT * depth + line for line in text.rstrip("\n").splitlines())


class _Dumper(yaml.SafeDumper):
    """YAML for people: Decimals written digit for digit, read-only mappings and paths as plain data."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)  # indent list items under their key, as people write them


_Dumper.add_representer(Decimal, lambda d, v: d.represent_scalar("tag:yaml.org,2002:float", str(v)))
_Dumper.add_representer(MappingProxyType, lambda d, v: d.represent_dict(dict(v)))
_Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))
_Dumper.add_multi_representer(Path, lambda d, v: d.represent_str(str(v)))


def as_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


@routes.command("graph")
@click.argument("name", shell_complete=complete_route)
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "svg"]), default="mermaid", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (svg defaults to NAME.svg); otherwise print.")
@click.pass_obj
def draw(root: Path, name: str, fmt: str, output: Path | None) -> None:
    """Draw a route: Mermaid or Graphviz text, or SVG through Graphviz's `dot`."""
    route = load_project(root).route(name)
    if fmt == "svg":
        click.echo(f"wrote {graph.svg(route, output or Path(f'{route.name}.svg'))}")
        return
    text = graph.mermaid(route) if fmt == "mermaid" else graph.dot(route)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}")



def _explained() -> dict[str, dict[str, dict]]:
    """What `routes explain` knows, by section: each name's JSON Schema (description, fields, examples)."""
    return {"step kinds": {name: STEP_KINDS.get(name).schema for name in STEP_KINDS.names()},
            "file formats": FILE_FORMATS,
            "adapter kinds": dict(sorted(ADAPTER_KINDS.items()))}


@routes.command()
@click.argument("kind", required=False)
def explain(kind: str | None) -> None:
    """What a step kind, the route or adapter file format (`route`, `adapter`) or an adapter kind (`rest`,
    `soap`, `sftp`) takes: its fields, description and example; without KIND, each in one line."""
    sections = _explained()
    if kind is None:
        width = max(len(name) for schemas in sections.values() for name in schemas)
        for i, (title, schemas) in enumerate(sections.items()):
            click.echo(f"{'' if i == 0 else chr(10)}{title}:")
            for name, schema in schemas.items():
                click.echo(f"{INDENT}{name:<{width}}  {first_sentence(schema.get('description', ''))}")
        return
    schemas = {name: schema for section in sections.values() for name, schema in section.items()}
    if kind not in schemas:
        click.echo(f"nothing to explain is named {kind}. {did_you_mean(kind, list(schemas))}", err=True)
        raise click.exceptions.Exit(1)
    for line in _explain_lines(kind, schemas[kind], whole=kind not in STEP_KINDS):
        click.echo(line)


# a full stop ends a sentence when a space or the end follows, outside brackets, not in "e.g." or "i.e."
_FULL_STOP = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.(?=\s|$)")


def first_sentence(text: str) -> str:
    """The first whole sentence of `text` (all of it when it has one)."""
    depth = 0
    for i, char in enumerate(text):
        depth += (char in "([{") - (char in ")]}")
        if char == "." and depth <= 0 and _FULL_STOP.match(text, i):
            return text[:i + 1]
    return text


def _explain_lines(kind: str, schema: dict, whole: bool = False) -> Iterator[str]:
    """`whole`: an example is a whole file, not a step `- KIND: settings`."""
    yield f"{kind}: {schema.get('description', '')}"
    yield ""
    yield f"written as: {_type(schema)}"
    yield from _field_lines(list(_fields(schema, 1)))
    examples = schema.get("examples", [])
    if examples:
        yield ""
        yield "example:" if len(examples) == 1 else "examples:"
    for i, example in enumerate(examples):
        yield from [""] if i else []
        yield from _indented(as_yaml(example if whole else [{kind: example}]), 1)


def _field_lines(fields: list[tuple[str, str, bool, str, int]]) -> Iterator[str]:
    if not fields:
        return
    yield ""
    yield "fields:"
    names = [INDENT * depth + name for name, *_, depth in fields]
    name_width, type_width = max(map(len, names)), max(len(f[1]) for f in fields)
    for shown, (_, type_, required, description, _) in zip(names, fields, strict=True):
        need = "required" if required else "optional"
        yield f"{shown:<{name_width}}  {type_:<{type_width}}  {need}  {description}".rstrip()


def _fields(schema: dict, depth: int) -> Iterator[tuple[str, str, bool, str, int]]:
    """(name, type, required, description, depth) of each field, nested objects included."""
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        schema = schema["items"]
    alternatives = [schema] + [s for s in schema.get("anyOf", []) + schema.get("oneOf", []) if isinstance(s, dict)]
    for alternative in alternatives:
        required = set(alternative.get("required", []))
        for name, field in alternative.get("properties", {}).items():
            yield name, _type(field), name in required, field.get("description", ""), depth
            if depth < 4 and isinstance(field, dict):
                yield from _fields(field, depth + 1)
                yield from _named_entries(field, depth + 1)


def _named_entries(schema: dict, depth: int) -> Iterator[tuple[str, str, bool, str, int]]:
    """The fields of each entry of a mapping by name (an adapter's `operations: {NAME: ...}`)."""
    entry = schema.get("additionalProperties")
    if isinstance(entry, dict) and entry.get("properties"):
        yield "NAME", _type(entry), False, entry.get("description", "each entry, by its name"), depth
        yield from _fields(entry, depth + 1)


def _type(schema: dict) -> str:
    if "enum" in schema:
        return "one of " + "|".join(map(str, schema["enum"]))
    if "const" in schema:
        return repr(schema["const"])
    types = schema.get("type")
    if types is None and ("anyOf" in schema or "oneOf" in schema):
        types = [_type(s) for s in schema.get("anyOf", []) + schema.get("oneOf", [])]
    if isinstance(types, list):
        return " or ".join(dict.fromkeys(types))
    return types or "any"


@routes.command("test")
@click.argument("name", required=False, shell_complete=complete_route)
@click.pass_obj
def run_tests(root: Path, name: str | None) -> None:
    """Run the cases of routes/tests/*.yaml in process (no broker); exit 1 on any failure."""
    results = run_route_tests(load_project(root), name)
    if not results:
        click.echo(f"no cases found in {TESTS_FOLDER}/*.yaml")
    for result in results:
        click.echo(_result_line(result))
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise click.exceptions.Exit(1)


def _result_line(result: CaseResult) -> str:
    if result.passed:
        return f"PASS {result.route} :: {result.case}"
    return f"FAIL {result.route} :: {result.case} — {'; '.join(result.reasons)} ({result.where})"
