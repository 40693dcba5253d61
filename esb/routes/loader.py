"""Build routes from routes/*.yaml: the one loader used by `esb run` and `esb routes ...`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from esb.errors import ConfigError
from esb.inbound.spec import http_source
from esb.loading.durations import seconds
from esb.loading.interpolate import hidden_variables, interpolate, unrepeated
from esb.loading.registry import did_you_mean
from esb.loading.schemacheck import check
from esb.loading.secrets import is_secret_name
from esb.loading.sizes import size_bytes
from esb.loading.yamlsource import Located
from esb.routes.lint import comparison_warnings
from esb.routes.model import Backoff, Idempotency, Ordering, RetryPolicy, Route, Schedule, Source
from esb.routes.schema import LABEL, ROUTE, STEP_META_KEYS
from esb.steps import STEP_KINDS
from esb.steps.base import BuildContext, Step
from esb.transform.expressions import compile_expression


def build_route(located: Located, root: Path, adapters: Mapping[str, Any], env: Mapping[str, str],
                warnings: list[ConfigError] | None = None) -> tuple[Route | None, list[ConfigError]]:
    """Build one route from its file; return it (or None) and every problem found. What runs but
    may not mean what it says (see esb/routes/lint.py) is added to `warnings`."""
    if not isinstance(located.data, dict):
        return None, [located.error((), "a route file must be a mapping with name, source and steps")]
    data, _, errors = interpolate(located, env, secret_rule(adapters))
    errors += unrepeated(errors, check(located, ROUTE, data))
    ctx = BuildContext(root, located, adapters, errors, None, warnings=[] if warnings is None else warnings)
    ctx.build_steps = lambda items, at, prefix: _build_steps(items, at, prefix, ctx)
    steps = data.get("steps")
    if isinstance(steps, list):  # report step problems even when other keys are wrong
        steps = ctx.build_steps(steps, ("steps",), "")
    if errors:
        return None, errors
    idempotency = _idempotency(data.get("idempotency"), located, errors)
    ordering = _ordering(data, located, errors)
    route = Route(
        name=data["name"], source=_source(data, env, located, errors), steps=steps,
        description=data.get("description", ""),
        concurrency=data.get("concurrency", 8), idempotency=idempotency, retry=_retry(data.get("retry", {})),
        path=located.path, line=located.where(())[0] or 1,
        max_body_bytes=size_bytes(data["max_body"]) if "max_body" in data else None, ordering=ordering)
    return (None if errors else route), errors


def secret_rule(adapters: Mapping[str, Any]) -> Callable[[str, str], bool]:
    """A `${VAR}` is kept out of routes when its name looks secret or an adapter uses its value as a credential."""
    used = set().union(*(spec.secrets for spec in adapters.values() if spec is not None))
    return lambda name, value: is_secret_name(name) or value in used


def secret_warnings(located: Located, adapters: Mapping[str, Any], env: Mapping[str, str]) -> list[ConfigError]:
    """A warning at each `${VAR}` of a route that would print a secret (it is filled in as ***)."""
    if not isinstance(located.data, dict):
        return []
    return [located.error(at, _secret_sentence(at, name), _SECRET_HINTS[_secret_place(at)])
            for at, name in hidden_variables(located, env, secret_rule(adapters))]


_SECRET_HINTS = {"log": "log something else; esb writes *** in its place",
                 "set_headers": "let the adapter send credentials; esb sets *** in its place",
                 "route": "routes need no credentials (adapters hold them); esb uses *** in its place"}


def _secret_place(at: tuple) -> str:
    return next((k for k in reversed(at) if k in ("log", "set_headers")), "route")


def _secret_sentence(at: tuple, name: str) -> str:
    place = _secret_place(at)
    if place == "log":
        return f"warning: this log step would print the secret ${{{name}}}"
    if place == "set_headers":
        return f"warning: this header would carry the secret ${{{name}}} into publishes, logs and dead letters"
    return f"warning: the route uses the secret ${{{name}}}"


def _build_steps(items: list, at: tuple, prefix: str, ctx: BuildContext) -> tuple[Step, ...]:
    steps = []
    for index, item in enumerate(items, start=1):
        step = _build_step(item, at + (index - 1,), f"{prefix}{{kind}}-{index}", ctx)
        if step is not None:
            steps.append(step)
    return tuple(steps)


def _build_step(item: Any, at: tuple, default_label: str, ctx: BuildContext) -> Step | None:
    located = ctx.located
    if not isinstance(item, dict):
        ctx.error(at, "a step must be a mapping like `- validate: {...}`")
        return None
    kinds = [k for k in item if k not in STEP_META_KEYS]
    stray = _stray_setting(kinds)
    if stray is not None:
        kind, key = stray
        ctx.error(at + (key,), f"'{key}' is a setting of the `{kind}` step above it, written beside `{kind}:`",
                  f"indent `{key}:` under `{kind}:`", key=True)
        return None
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        ctx.error(at, f"a step needs exactly one kind (found: {found})",
                  "split it into one step per kind; kinds are: " + ", ".join(STEP_KINDS.names()))
        return None
    kind = kinds[0]
    if kind not in STEP_KINDS:
        ctx.error(at + (kind,), f"unknown step kind '{kind}'", did_you_mean(kind, STEP_KINDS.names()), key=True)
        return None
    step_class = STEP_KINDS.get(kind)
    problems = check(located, {"type": "object", "properties": {"label": LABEL, "description": {"type": "string"},
                                                                  kind: step_class.schema}}, item, at)
    if problems:
        ctx.errors.extend(problems)
        return None
    label = item.get("label") or default_label.format(kind=kind)
    if label in ctx.labels:
        ctx.error(at + ("label",), f"the label '{label}' is already used by another step of this route",
                  "give each step its own label")
        return None
    ctx.labels.add(label)
    before = len(ctx.errors)
    step = step_class.build(item[kind], label, ctx, at + (kind,))
    if len(ctx.errors) != before:
        return None
    ctx.warnings += comparison_warnings(step, located, at)
    return step


def _stray_setting(keys: list[str]) -> tuple[str, str] | None:
    """(kind, key) when a step's only extra key is a setting of its one kind: it was dedented."""
    kinds = [k for k in keys if k in STEP_KINDS]
    others = [k for k in keys if k not in STEP_KINDS]
    if len(kinds) != 1 or len(others) != 1:
        return None
    settings = STEP_KINDS.get(kinds[0]).schema.get("properties", {})
    return (kinds[0], others[0]) if others[0] in settings else None


def _source(data: dict, env: Mapping[str, str], located: Located, errors: list[ConfigError]) -> Source:
    source = data["source"]
    return Source(queue=source.get("queue", data["name"]), exchange=source.get("exchange"),
                  binding_key=source.get("binding_key", "#"), exchange_type=source.get("exchange_type", "topic"),
                  quorum=source.get("quorum"), format=source.get("format", "json"),
                  http=http_source(source.get("http"), env),
                  schedule=_schedule(source, located, errors))


def _schedule(source: dict, located: Located, errors: list[ConfigError]) -> Schedule | None:
    """`source.schedule`, refused with the field at fault: a cron or zone that does not parse, or an exchange too."""
    from esb.runtime.schedule import schedule_problem
    config = source.get("schedule")
    if config is None:
        return None
    schedule = Schedule(cron=config["cron"], timezone=config.get("timezone", "UTC"),
                        calendar=config.get("calendar", "none"), catch_up=bool(config.get("catch_up", False)))
    problem = schedule_problem(schedule)
    if problem is not None:
        errors.append(located.error(("source", "schedule", problem[0]), problem[1], problem[2]))
    if "exchange" in source:
        errors.append(located.error(("source", "exchange"), "a scheduled route takes no exchange: the scheduler "
                                    "publishes its trigger messages to the route's queue",
                                    "drop `exchange` (or `schedule`)", key=True))
    return schedule


def _retry(retry: dict) -> RetryPolicy:
    backoff = retry.get("backoff", {})
    defaults = Backoff()
    return RetryPolicy(
        attempts=retry.get("attempts", RetryPolicy.attempts),
        in_process=retry.get("in_process", RetryPolicy.in_process),
        backoff=Backoff(initial=seconds(backoff.get("initial", defaults.initial)),
                        multiplier=float(backoff.get("multiplier", defaults.multiplier)),
                        max=seconds(backoff.get("max", defaults.max))))


def _idempotency(config: dict | None, located: Located, errors: list[ConfigError]) -> Idempotency | None:
    if not config:
        return None
    if "key" in config:
        try:
            compile_expression(config["key"])
        except ValueError as exc:
            errors.append(located.error(("idempotency", "key"), str(exc), "write a JMESPath expression like claim_id"))
    return Idempotency(key=config.get("key"), header=config.get("header"))



def _ordering(data: dict, located: Located, errors: list[ConfigError]) -> Ordering | None:
    """`ordering`, refused where it cannot keep order: a key that is no JMESPath, a body that is not
    JSON, or more concurrency than partitions (each partition runs one message at a time)."""
    config = data.get("ordering")
    if not config:
        return None
    ordering = Ordering(key=config["key"], partitions=config.get("partitions", Ordering.partitions))
    try:
        compile_expression(ordering.key)
    except ValueError as exc:
        errors.append(located.error(("ordering", "key"), str(exc), "write a JMESPath expression like account"))
    source_format = data["source"].get("format", "json")
    if source_format != "json":
        errors.append(located.error(("source", "format"), f"an ordered route reads its key from a JSON body, but "
                                    f"this route reads {source_format} bodies",
                                    "order a route whose source sends JSON, or drop `ordering`"))
    if data.get("concurrency", 0) > ordering.partitions:
        errors.append(located.error(("concurrency",), f"concurrency {data['concurrency']} is more than the "
                                    f"{ordering.partitions} partitions of this ordered route: each partition runs "
                                    "one message at a time", "raise ordering.partitions or lower concurrency"))
    return ordering
