"""`filter` and `choice`: stop a message, or send it down the first branch whose condition holds."""

from __future__ import annotations

import dataclasses
from typing import Any

from esb.message import Message
from esb.steps.base import BuildContext, Step, StepIO
from esb.steps.pipeline import run_nested
from esb.transform.expressions import Expression, ExpressionError, compile_expression, is_true, search_message

_CONDITION = {"type": "string", "minLength": 1,
              "description": "a JMESPath expression over the body (header(name) reads a header); "
                             "null, false, '', [] and {} are false, any number is true",
              "examples": ["total > `50000`"]}
_STEPS = {"type": "array", "minItems": 1, "items": {"type": "object"},
          "description": "the steps of this branch, written like the route's own"}


def _condition(text: str, ctx: BuildContext, at: tuple) -> Expression | None:
    try:
        return compile_expression(text)
    except ExpressionError as exc:
        ctx.error(at, str(exc), exc.hint)
        return None


@dataclasses.dataclass(frozen=True)
class FilterStep(Step):
    kind = "filter"
    schema = {
        "description": "Let the message go on only when the condition is true; otherwise it stops "
                       "here, is acked and counted as filtered (not an error).",
        "type": ["string", "object"],  # the condition, or {when: condition}
        "minLength": 1,
        "additionalProperties": False,
        "required": ["when"],
        "properties": {"when": _CONDITION},
        "examples": ["total > `0`", {"when": "header('source') == 'oa'"}],
    }

    label: str
    when: str
    _test: Expression | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, config: Any, label: str, ctx: BuildContext, at: tuple) -> FilterStep:
        text, where = (config, at) if isinstance(config, str) else (config["when"], at + ("when",))
        return cls(label, text, _condition(text, ctx, where))

    def run(self, message: Message, io: StepIO) -> Message | None:
        return message if is_true(search_message(self._test, message, "filter")) else None


@dataclasses.dataclass(frozen=True)
class Case:
    """One branch of a choice: its condition and its steps."""

    when: Expression
    steps: tuple[Step, ...]


@dataclasses.dataclass(frozen=True)
class ChoiceStep(Step):
    kind = "choice"
    schema = {
        "description": "Content-based routing: run the steps of the first `when` whose condition is "
                       "true, else those of a final `otherwise`; with neither, the message goes on "
                       "unchanged. The route continues after the choice with the branch's result.",
        "type": "array",
        "minItems": 1,
        "items": {"anyOf": [
            {"type": "object", "additionalProperties": False, "required": ["when", "steps"],
             "properties": {"when": _CONDITION, "steps": _STEPS}},
            {"type": "object", "additionalProperties": False, "required": ["otherwise"],
             "properties": {"otherwise": _STEPS}},
        ]},
        "examples": [[{"when": "total > `50000`",
                       "steps": [{"publish": {"exchange": "finance.review", "routing_key": "voucher.large"}}]},
                      {"otherwise": [{"log": "voucher within limits"}]}]],
    }

    label: str
    cases: tuple[Case, ...] = ()
    otherwise: tuple[Step, ...] | None = None

    @classmethod
    def build(cls, config: list, label: str, ctx: BuildContext, at: tuple) -> ChoiceStep:
        cases, otherwise = [], None
        for i, item in enumerate(config):
            if "otherwise" in item:
                if i != len(config) - 1:
                    ctx.error(at + (i,), "`otherwise` must be the last branch of a choice",
                              "move it to the end; branches after it could never run")
                otherwise = ctx.build_steps(item["otherwise"], at + (i, "otherwise"), f"{label}.otherwise.")
                continue
            test = _condition(item["when"], ctx, at + (i, "when"))
            steps = ctx.build_steps(item["steps"], at + (i, "steps"), f"{label}.{i + 1}.")
            if test is not None:
                cases.append(Case(test, steps))
        return cls(label, tuple(cases), otherwise)

    def run(self, message: Message, io: StepIO) -> Message | None:
        for case in self.cases:
            if is_true(search_message(case.when, message, "choice")):
                return run_nested(case.steps, message, io)
        return run_nested(self.otherwise, message, io) if self.otherwise is not None else message

    def branches(self) -> list[tuple[str, tuple[Step, ...]]]:
        found = [(case.when.text, case.steps) for case in self.cases]
        return found + ([("otherwise", self.otherwise)] if self.otherwise is not None else [])

    def settings(self) -> dict:
        shown = {"when": [case.when.text for case in self.cases]}
        return shown | ({"otherwise": f"{len(self.otherwise)} steps"} if self.otherwise is not None else {})
