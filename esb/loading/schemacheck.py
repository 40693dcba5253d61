"""Check data read from an asset file against a JSON Schema, as `file:line:col` sentences."""

from __future__ import annotations

from typing import Any

import jsonschema

from esb.errors import ConfigError
from esb.loading.registry import did_you_mean
from esb.loading.yamlsource import Located

_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "object": "a mapping (key: value)", "array": "a list", "null": "empty"}


def check(located: Located, schema: dict, data: Any, at: tuple = ()) -> list[ConfigError]:
    """Every schema problem of `data`, found at `at` in the file, as a ConfigError."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [_sentence(located, e, at) for e in _leaves(errors)]


def _leaves(errors):
    """Replace an anyOf/oneOf failure by its most telling sub-error."""
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            yield jsonschema.exceptions.best_match(error.context)
        else:
            yield error


def _field(path: tuple) -> str:
    names = [p for p in path if isinstance(p, str)]
    return names[-1] if names else "the file"


def _sentence(located: Located, error: jsonschema.ValidationError, at: tuple) -> ConfigError:
    path = at + tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed][0]
        return located.error(path + (extra,), f"unknown key '{extra}'", did_you_mean(extra, allowed), key=True)
    if kind == "required":
        missing = error.message.split("'")[1]
        desc = schema.get("properties", {}).get(missing, {}).get("description")
        return located.error(path, f"'{_field(path)}' is missing the required field '{missing}'",
                             f"add `{missing}:`" + (f" ({desc})" if desc else ""), key=True)
    if kind == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
        return located.error(path, f"'{_field(path)}' must be {words}, not {error.instance!r}", _example(schema))
    if kind == "enum":
        options = ", ".join(map(str, error.validator_value))
        return located.error(path, f"'{_field(path)}' must be one of: {options}",
                             did_you_mean(str(error.instance), [str(o) for o in error.validator_value]))
    return located.error(path, f"'{_field(path)}': {error.message}", _example(schema) or schema.get("description"))


def _example(schema: dict) -> str | None:
    examples = schema.get("examples")
    return f"for example: {examples[0]!r}" if examples else None
