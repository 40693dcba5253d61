"""`set_headers`: set message headers from JMESPath expressions over the body and headers."""

from __future__ import annotations

import dataclasses
from typing import Any

from esb.message import HEADER_PREFIX, Message
from esb.steps.base import BuildContext, Step, StepIO
from esb.transform.expressions import Expression, ExpressionError, compile_expression, search_message


@dataclasses.dataclass(frozen=True)
class SetHeadersStep(Step):
    kind = "set_headers"
    schema = {
        "description": "Set headers, each from a JMESPath expression over the body (header(name) reads "
                       "another header). Write a constant as a raw string: 'oa'. Headers travel with "
                       "the message to later steps, publishes and dead letters. Names starting with "
                       f"{HEADER_PREFIX} are esb's own.",
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"minLength": 1, "maxLength": 128},
        "additionalProperties": {"type": "string", "minLength": 1, "examples": ["claim_id"]},
        "examples": [{"claim-id": "claim_id", "source-system": "'oa'", "priority": "header('priority') || 'normal'"}],
    }

    label: str
    headers: tuple[tuple[str, str], ...] = ()
    _expressions: tuple[tuple[str, Expression], ...] = dataclasses.field(default=(), repr=False, compare=False)

    @classmethod
    def build(cls, config: dict, label: str, ctx: BuildContext, at: tuple) -> SetHeadersStep:
        compiled = []
        for name, text in config.items():
            if name.lower().startswith(HEADER_PREFIX):
                ctx.error(at + (name,), f"the header '{name}' is esb's own (it carries retry and dead-letter "
                                        "state)", f"choose a name that does not start with {HEADER_PREFIX}", key=True)
                continue
            try:
                compiled.append((name, compile_expression(text)))
            except ExpressionError as exc:
                ctx.error(at + (name,), str(exc), exc.hint)
        return cls(label, tuple(config.items()), tuple(compiled))

    def run(self, message: Message, io: StepIO) -> Message:
        values: dict[str, Any] = {name: search_message(expression, message, "set_headers")
                                  for name, expression in self._expressions}
        return message.with_headers(**values)
