"""Mapping specs: a tree of JMESPath expressions that builds a new JSON body from the old one.

A spec is YAML, in a file under transformers/ or inline in a `map` step:

    description: Approved expense claims as ledger vouchers.   # optional
    output:                       # the new body: a tree of mappings and lists
      voucher_no: "concat('EXP-', claim_id)"      # text leaves are JMESPath expressions
      source: "'OA'"                              # a constant text is a JMESPath raw string
      amount: "round(total, `2`)"                 # a constant number is a literal in backticks
      lines: "items[].{account: account, amount: amount}"
      version: 2                                  # numbers, true/false and null are constants

or, when one expression builds the whole body:

    expression: "{id: claim_id, total: sum(items[].amount)}"

Every expression is compiled when the spec is loaded, so a typo is a `file:line` error at load
time. An expression whose value is missing gives null (use default(x, fallback) to fill it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from esb.errors import ConfigError, ConfigErrors, TransformError
from esb.loading.schemacheck import check
from esb.loading.yamlsource import Located, load_yaml
from esb.transform.expressions import Expression, ExpressionError, compile_expression

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string", "description": "what the mapping is for"},
        "output": {"type": ["object", "array", "string"],
                   "description": "the new body: a tree whose text leaves are JMESPath expressions",
                   "examples": [{"voucher_no": "concat('EXP-', claim_id)", "source": "'OA'",
                                 "amount": "round(total, `2`)"}]},
        "expression": {"type": "string", "description": "one JMESPath expression that builds the whole body",
                       "examples": ["{id: claim_id, total: sum(items[].amount)}"]},
    },
}
_ONE_OF = "a mapping needs either `output` (a tree of expressions) or `expression` (one JMESPath)"


@dataclasses.dataclass(frozen=True)
class _Leaf:
    field: str
    expression: Expression


@dataclasses.dataclass(frozen=True)
class _Object:
    fields: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class _List:
    items: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class _Constant:
    value: Any


@dataclasses.dataclass(frozen=True)
class MappingSpec:
    """A compiled mapping; `source` names where it was written (a file, or a route step)."""

    source: str
    root: Any = dataclasses.field(repr=False)
    description: str = ""

    def expressions(self) -> Iterator[tuple[str, Expression]]:
        """(output field, expression) for each expression of the spec, in the order written."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, _Leaf):
                yield node.field, node.expression
            elif isinstance(node, (_Object, _List)):
                children = node.items if isinstance(node, _List) else [value for _, value in node.fields]
                stack.extend(reversed(children))

    def apply(self, body: Any, headers: Mapping[str, Any] | None = None) -> Any:
        """The new body. Unchanged parts are shared with `body`, which is never modified."""
        try:
            return _evaluate(self.root, body, headers)
        except TransformError as exc:
            raise TransformError(f"the mapping {self.source} failed: {exc.message}") from exc


def compile_mapping(spec: Any, where: str, located: Located | None = None, at: tuple = ()) -> MappingSpec:
    """Compile a spec found at `at` in `located` (or, without it, known only by the name `where`).

    Raises ConfigErrors naming every bad expression, each at its line when `located` is given.
    """
    located = located or Located(where, spec, {(): (None, None)}, {})
    errors = check(located, SCHEMA, spec, at)
    if not isinstance(spec, dict):
        raise ConfigErrors(errors)
    if ("output" in spec) == ("expression" in spec):
        errors.append(located.error(at, _ONE_OF, "keep exactly one of the two"))
    key = "expression" if "expression" in spec else "output"
    root = _compile(spec.get(key), at + (key,), "", located, errors)  # even after a schema error: report all
    if errors:
        raise ConfigErrors(errors)
    return MappingSpec(where, root, spec.get("description", ""))


def load_mapping(path: Path, display: str) -> MappingSpec:
    """Load a mapping spec file; errors carry `display:line:col`."""
    located = load_yaml(path, display)
    return compile_mapping(located.data, display, located)


def _compile(node: Any, at: tuple, field: str, located: Located, errors: list[ConfigError]) -> Any:
    if isinstance(node, str):
        try:
            return _Leaf(field, compile_expression(node))
        except ExpressionError as exc:
            errors.append(located.error(at, str(exc), exc.hint))
            return None
    if isinstance(node, dict):
        return _Object(tuple((key, _compile(value, at + (key,), _dotted(field, key), located, errors))
                             for key, value in node.items()))
    if isinstance(node, list):
        return _List(tuple(_compile(item, at + (i,), f"{field}[{i}]", located, errors)
                           for i, item in enumerate(node)))
    return _Constant(node)


def _dotted(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _evaluate(node: Any, body: Any, headers: Mapping[str, Any] | None) -> Any:
    if isinstance(node, _Leaf):
        try:
            return node.expression.search(body, headers)
        except TransformError as exc:
            raise TransformError(f"the field {node.field}: {exc.message}" if node.field else exc.message) from exc
    if isinstance(node, _Object):
        return {key: _evaluate(value, body, headers) for key, value in node.fields}
    if isinstance(node, _List):
        return [_evaluate(item, body, headers) for item in node.items]
    return node.value
