"""`validate`: check the body against a JSON Schema or an XSD; a mismatch is a permanent failure."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jsonschema

from esb.errors import ConfigError, TransformError, ValidationError
from esb.message import Message
from esb.steps.base import BuildContext, Step, StepIO
from esb.transform.assets import load_json_schema, load_xsd_file, without_hint
from esb.transform.safexml import parse_xml, validate_xsd

MAX_SHOWN = 5  # problems named in one error; a dead-letter header must stay readable
MAX_PROBLEM_CHARS = 200
_FILE = {"type": "string", "minLength": 1, "description": "a file path relative to the project root"}


@dataclasses.dataclass(frozen=True)
class ValidateStep(Step):
    kind = "validate"
    schema = {
        "description": "Check the body against a JSON Schema (`json_schema`, for JSON bodies) or an XML "
                       "Schema (`xsd`, for XML bodies); give exactly one. A body that does not match "
                       "fails permanently and is dead-lettered with every problem named by its field.",
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            "json_schema": {**_FILE, "description": "a JSON Schema file (Draft 2020-12 unless it says $schema)",
                            "examples": ["transformers/schemas/expense-approved.json"]},
            "xsd": {**_FILE, "description": "an XML Schema file",
                    "examples": ["transformers/schemas/pain.001.001.03.xsd"]},
        },
        "examples": [{"json_schema": "transformers/schemas/expense-approved.json"}],
    }

    label: str
    file: str
    format: str  # "json_schema" or "xsd"
    _checker: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, config: dict, label: str, ctx: BuildContext, at: tuple) -> ValidateStep:
        format_, relative = next(iter(config.items()))
        path = ctx.asset(relative, at + (format_,))
        checker = None
        if path is not None:
            load = load_json_schema if format_ == "json_schema" else load_xsd_file
            try:
                checker = load(path, relative)
            except ConfigError as exc:
                ctx.error(at + (format_,), without_hint(exc), exc.hint)
        return cls(label, relative, format_, checker)

    def run(self, message: Message, io: StepIO) -> Message:
        if self.format == "xsd":
            self._check_xml(message)
        else:
            self._check_json(message)
        return message

    def _check_json(self, message: Message) -> None:
        if not message.is_json:
            raise ValidationError(f"the body is {message.content_type}, but {self.file} is a JSON Schema "
                                  "and checks JSON bodies; convert it first (xml_to_json) or validate with an xsd")
        problems = [_problem(e) for e in _leaves(self._checker.iter_errors(message.body))]
        if problems:
            raise ValidationError(_summary(problems))

    def _check_xml(self, message: Message) -> None:
        if message.is_json or not isinstance(message.body, (str, bytes)):
            raise ValidationError(f"the body is {message.content_type}, but {self.file} is an XML Schema and "
                                  "checks XML bodies; convert it first (json_to_xml) or validate with a json_schema")
        try:
            root = parse_xml(message.body)
        except TransformError as exc:
            raise ValidationError(f"the body is not XML that {self.file} can check: {exc.message}") from exc
        validate_xsd(self._checker, root)


def _leaves(errors: Any) -> list[jsonschema.ValidationError]:
    """Every problem in field order; an anyOf/oneOf failure is replaced by its most telling branch."""
    found = [jsonschema.exceptions.best_match(e.context) if e.validator in ("anyOf", "oneOf") and e.context else e
             for e in errors]
    return sorted(found, key=lambda e: [str(p) for p in e.absolute_path])


def _problem(error: jsonschema.ValidationError) -> str:
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    text = re.sub(r"Decimal\('([^']*)'\)", r"\1", error.message)  # show 12.50, not Decimal('12.50')
    if len(text) > MAX_PROBLEM_CHARS:
        text = text[:MAX_PROBLEM_CHARS] + "…"
    return f"{field or 'body'}: {text}"


def _summary(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_SHOWN])
    more = len(problems) - MAX_SHOWN
    return f"{shown}; and {more} more" if more > 0 else shown
