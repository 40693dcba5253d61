"""Warnings for routes that run but may not mean what they say; `esb routes validate` prints them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from esb.errors import ConfigError
from esb.loading.yamlsource import Located
from esb.steps.base import Step
from esb.transform.expressions import Expression, text_comparisons
from esb.transform.mapping import MappingSpec


def comparison_warnings(step: Step, located: Located, at: tuple) -> list[ConfigError]:
    """A warning for each comparison of `step` (its own expressions and mappings, not nested steps)
    that orders a value against numeric-looking text: XML amounts are text, and '99.00' > '100'."""
    route = located.data.get("name") if isinstance(located.data, dict) else None
    return [located.error(at, f"warning: {place}step '{step.label}' of route '{route}' orders a value against "
                              f"the text '{literal}' in `{expression.text}`; text orders as text (XML amounts "
                              "are text), so '99.00' > '100' would hold",
                          f"compare numbers: to_number(field) > `{literal.strip()}`, or decimal(field) > "
                          f"`{literal.strip()}` to make a field that is not a number an error")
            for place, expression in _expressions(step, "") for literal in text_comparisons(expression)]


def _expressions(value: Any, place: str) -> Iterator[tuple[str, Expression]]:
    """(where, expression) for every expression held by a step's settings, nested steps left out
    (each is checked as a step of its own)."""
    if isinstance(value, Expression):
        yield place, value
    elif isinstance(value, MappingSpec):
        for field, expression in value.expressions():
            yield f"field {field or '(the whole body)'} of the mapping {value.source}, used by ", expression
    elif isinstance(value, (tuple, list)):
        for item in value:
            if not isinstance(item, Step):
                yield from _expressions(item, place)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _expressions(item, place)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _expressions(getattr(value, field.name), place)
