"""`map`: build a new JSON body from the old one with a mapping spec (JMESPath expressions)."""

from __future__ import annotations

import dataclasses
from typing import Any

from esb.errors import ConfigErrors, TransformError
from esb.message import Message
from esb.steps.base import BuildContext, Step, StepIO
from esb.transform.expressions import FUNCTION_HELP
from esb.transform.mapping import SCHEMA as SPEC_SCHEMA
from esb.transform.mapping import MappingSpec, compile_mapping, load_mapping

_FILE = {"type": "string", "minLength": 1, "description": "a mapping spec file, relative to the project root",
         "examples": ["transformers/expense-to-voucher.yaml"]}


@dataclasses.dataclass(frozen=True)
class MapStep(Step):
    kind = "map"
    schema = {
        "description": "Replace the JSON body by a new one built with JMESPath: a mapping file "
                       "(transformers/*.yaml), or `output` (a tree whose text leaves are expressions) "
                       "or `expression` written inline. Numbers stay Decimal. Functions beyond "
                       "JMESPath's own: " + ", ".join(sorted(FUNCTION_HELP)) + ".",
        "type": ["string", "object"],  # the file, or {file: ...}, or an inline spec
        "minLength": 1,
        "additionalProperties": False,
        "properties": {"file": _FILE, **SPEC_SCHEMA["properties"]},
        "examples": ["transformers/expense-to-voucher.yaml",
                     {"output": {"voucher_no": "concat('EXP-', claim_id)", "source": "'OA'",
                                 "amount": "round(total, `2`)", "lines": "items[].{account: account, amount: amount}"}},
                     {"expression": "{id: claim_id, total: sum(items[].amount)}"}],
    }

    label: str
    file: str | None
    description: str = ""
    _spec: MappingSpec | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, config: Any, label: str, ctx: BuildContext, at: tuple) -> MapStep:
        if isinstance(config, str):
            return cls(label, config, *_from_file(config, ctx, at))
        if "file" in config and len(config) > 1:
            ctx.error(at, "`file` cannot stand beside `output`, `expression` or `description`",
                      "write the mapping in the file, or inline")
            return cls(label, config["file"])
        if "file" in config:
            return cls(label, config["file"], *_from_file(config["file"], ctx, at + ("file",)))
        return cls(label, None, *_inline(config, label, ctx, at))

    def run(self, message: Message, io: StepIO) -> Message:
        if not message.is_json:
            hint = "add xml_to_json before it" if message.is_xml else "the body must be JSON"
            raise TransformError(f"map needs a JSON body, not {message.content_type}; {hint}")
        return message.with_body(self._spec.apply(message.body, message.headers))


def _from_file(file: str, ctx: BuildContext, at: tuple) -> tuple[str, MappingSpec | None]:
    path = ctx.asset(file, at)
    if path is None:
        return "", None
    try:
        spec = load_mapping(path, file)
    except ConfigErrors as exc:
        ctx.errors.extend(exc.errors)
        return "", None
    return spec.description, spec


def _inline(config: dict, label: str, ctx: BuildContext, at: tuple) -> tuple[str, MappingSpec | None]:
    try:
        spec = compile_mapping(config, f"of step {label}", ctx.located, at)
    except ConfigErrors as exc:
        ctx.errors.extend(exc.errors)
        return "", None
    return spec.description, spec
