"""Load and check the files in transformers/: JSON Schemas, XSDs, XSLT stylesheets, mappings, functions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.protocols import Validator
from lxml import etree

from esb.errors import ConfigError, ConfigErrors, TransformError
from esb.transform import jsoncodec
from esb.transform.mapping import load_mapping
from esb.transform.numbers import MAX_NUMBER_CHARS, fixed_point_chars
from esb.transform.safexml import load_xsd, load_xslt

DEFAULT_DRAFT = jsonschema.Draft202012Validator
_XML_POSITION = re.compile(r"(?:: | at )line (\d+)(?:, column (\d+))?:")
_JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")
_JSON_POSITION = re.compile(r"at line (\d+), column (\d+): (.*)")


def check_transformers(root: Path) -> list[ConfigError]:
    """Load every file under transformers/ the way a route would, so a broken sample never ships."""
    folder = root / "transformers"
    if not folder.is_dir():
        return []
    errors: list[ConfigError] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder)):
        errors += _check_file(path, path.relative_to(root).as_posix())
    return errors


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(folder).parts)


def _check_file(path: Path, display: str) -> list[ConfigError]:
    check = _CHECKS.get(path.suffix.lower())
    if check is None:
        return []
    try:
        check(path, display)
    except ConfigError as exc:
        return [exc]
    except ConfigErrors as exc:
        return list(exc.errors)
    return []


def load_json_schema(path: Path, display: str) -> Validator:
    """A validator for the JSON Schema in `path` (Draft 2020-12 unless `$schema` names another)."""
    schema = _read_json(path, display)
    if not isinstance(schema, (dict, bool)):
        raise ConfigError(f"a JSON Schema must be an object, not {type(schema).__name__}", path=display, line=1,
                          hint='write {"type": "object", "properties": {...}}')
    validator_class = _validator_class(schema, display)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _schema_problem(exc, validator_class, display) from None
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def _schema_problem(error: jsonschema.SchemaError, validator_class: type[Validator], display: str) -> ConfigError:
    where = _dotted(error.absolute_path) or "the top level"
    if list(error.absolute_path)[-1:] == ["type"]:
        return ConfigError(f"the JSON Schema is invalid at {where}: {error.instance!r} is not a JSON type",
                           path=display, hint="use one of: " + ", ".join(_JSON_TYPES))
    return ConfigError(f"the JSON Schema is invalid at {where}: {_plain(error.message)}", path=display,
                       hint=f"see {validator_class.META_SCHEMA['$schema']}")


def _read_json(path: Path, display: str) -> Any:
    try:
        return jsoncodec.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=display) from None
    except TransformError as exc:
        where = _JSON_POSITION.search(exc.message)
        line, col, problem = (int(where[1]), int(where[2]), where[3]) if where else (None, None, exc.message)
        raise ConfigError(f"the file is not valid JSON ({problem})", path=display, line=line, col=col,
                          hint="fix the JSON syntax: double quotes, commas, brackets") from None


def _validator_class(schema: Any, display: str) -> type[Validator]:
    if isinstance(schema, dict) and "$schema" in schema:
        known = jsonschema.validators.validator_for(schema, default=None)
        if known is None:
            raise ConfigError(f"the $schema {schema['$schema']!r} is not a JSON Schema draft esb knows", path=display,
                              hint=f"use \"{DEFAULT_DRAFT.META_SCHEMA['$schema']}\" or leave $schema out")
        return _decimal_aware(known)
    return _decimal_aware(DEFAULT_DRAFT)


def _decimal_aware(validator_class: type[Validator]) -> type[Validator]:
    """JSON numbers arrive as Decimal (money never touches float): a whole Decimal is an integer."""
    original = validator_class.TYPE_CHECKER

    def is_integer(checker: Any, instance: Any) -> bool:
        if isinstance(instance, Decimal):
            return instance.is_finite() and instance == instance.to_integral_value()
        return original.is_type(instance, "integer")

    checker = original.redefine("integer", is_integer)
    return jsonschema.validators.extend(validator_class, type_checker=checker,
                                        validators={"multipleOf": _multiple_of})


def _multiple_of(validator: Validator, divisor: Any, instance: Any, schema: Any) -> Iterator:
    """multipleOf in exact arithmetic. jsonschema's `instance % divisor` on Decimals raises
    InvalidOperation for 1e99999999 and rounds 1e-999999999999 to a remainder of 0; here a number
    too long to write out is a validation error, and any other is divided exactly."""
    if not validator.is_type(instance, "number"):
        return
    if isinstance(instance, Decimal) and not instance.is_finite():
        yield jsonschema.ValidationError(f"{instance} is not a finite number")
        return
    size = fixed_point_chars(instance) if isinstance(instance, Decimal) else 0
    if size > MAX_NUMBER_CHARS:  # Fraction(1e99999999) would build a 100-million-digit integer
        yield jsonschema.ValidationError(f"the number is {size:,} characters long written out in full, "
                                         f"over the limit of {MAX_NUMBER_CHARS:,}")
        return
    exact = Decimal(repr(divisor)) if isinstance(divisor, float) else divisor  # 0.01, not its binary neighbour
    if (Fraction(instance) / Fraction(exact)).denominator != 1:
        yield jsonschema.ValidationError(f"{instance} is not a multiple of {divisor}")


def load_xsd_file(path: Path, display: str) -> etree.XMLSchema:
    """Compile an XML Schema that reaches no network."""
    try:
        return load_xsd(path)
    except TransformError as exc:
        raise _xml_problem(exc, path, display, "the XML Schema cannot be used",
                           "fix the XSD; xs:include and xs:import must name files beside it") from None


def load_stylesheet(path: Path, display: str) -> etree.XSLT:
    """Compile an XSLT stylesheet that can touch no file, no network and no extension."""
    try:
        return load_xslt(path)
    except TransformError as exc:
        raise _xml_problem(exc, path, display, "the stylesheet cannot be used",
                           "write plain XSLT 1.0 (EXSLT functions are available); "
                           "xsl:import and xsl:include must name files beside it") from None


def _xml_problem(exc: TransformError, path: Path, display: str, what: str, hint: str) -> ConfigError:
    """A ConfigError from a safexml refusal: the path shown as the user wrote it, the line split out."""
    message = exc.message
    for shown in {str(path.resolve()), str(path)}:
        message = message.replace(f"{shown}: ", "").replace(shown, display)
    where = _XML_POSITION.search(message)
    if where is None:
        return ConfigError(f"{what}: {message}", path=display, hint=hint)
    # The position moves to path:line:col; libxml2 says line 0 when it has none.
    line, col = (int(where[1]) or None), (int(where[2]) if where[2] else None)
    message = _XML_POSITION.sub(":", message, count=1)
    return ConfigError(f"{what}: {message}", path=display, line=line, col=col, hint=hint)


def _check_json_schema(path: Path, display: str) -> None:
    load_json_schema(path, display)


def _check_xsd(path: Path, display: str) -> None:
    load_xsd_file(path, display)


def _check_stylesheet(path: Path, display: str) -> None:
    load_stylesheet(path, display)


def _check_mapping(path: Path, display: str) -> None:
    load_mapping(path, display)


def _check_python(path: Path, display: str) -> None:
    source = _read_text(path, display)
    try:
        compile(source, display, "exec")
    except SyntaxError as exc:
        raise ConfigError(f"the Python code does not compile: {exc.msg}", path=display, line=exc.lineno,
                          col=exc.offset, hint="fix the syntax on this line") from None
    except ValueError as exc:  # null bytes in the source, on Python 3.11
        raise ConfigError(f"the Python code does not compile: {exc}", path=display,
                          hint="save it as plain UTF-8 text") from None


def _read_text(path: Path, display: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=display) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not UTF-8 (byte {exc.start})", path=display, hint="save it as UTF-8") from None


def without_hint(error: ConfigError) -> str:
    """`path:line:col: message`, for repeating an asset's problem at the route line that names it."""
    return str(ConfigError(error.message, path=error.path, line=error.line, col=error.col))


def _dotted(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _plain(message: str) -> str:
    """jsonschema quotes values with repr(); show Decimal('12.50') as 12.50."""
    return re.sub(r"Decimal\('([^']*)'\)", r"\1", message)


_CHECKS: dict[str, Callable[[Path, str], None]] = {
    ".json": _check_json_schema, ".xsd": _check_xsd, ".xsl": _check_stylesheet, ".xslt": _check_stylesheet,
    ".yaml": _check_mapping, ".yml": _check_mapping, ".py": _check_python,
}
