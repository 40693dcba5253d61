"""JMESPath for money: Decimal is a number, no float ever appears, and finance functions are added.

Numbers in bodies are Decimal or int, and number literals in expressions (`` `0.1` ``) are read
as Decimal too, so comparisons and arithmetic stay exact. The built-ins take Decimal: `sum` is
exact, `avg` divides in decimal, `to_number` gives int or Decimal, `to_string` writes a Decimal
digit for digit. Ordering text against a number (`'100' > `5``) is an error, not a silent null.

What a number is, and how it reads as text, never changes on the way: numbers become text
(concat, to_string, a JSON body) in fixed point, 1000 and never 1.00E+3; only ASCII digits make
a number ('１２' is text; ascii_digits() converts it when the author wants that); and a boolean
never equals a number, at any depth (`[1]` == `[true]` is false, as the JMESPath spec says).
Text still compares as text: '99.00' > '100' is true. Compare amounts read from XML with
to_number(v) > `100` or decimal(v) > `100`; text_comparisons() finds the comparisons that
probably meant numbers, for a validation warning.

Functions esb adds. A null argument is an error (a missing field must not become a zero);
guard optional fields with `default(x, fallback)` or `x && f(x)`:

    decimal(x)                    text or number -> Decimal; text that is not a number is an error
    ascii_digits(s)               fullwidth (１２．５) and other Unicode digits as ASCII (12.5)
    add(a, b) sub(a, b) mul(a, b) exact decimal arithmetic; text holding a number is accepted
    div(a, b)                     decimal division to 34 significant digits; by zero is an error
    neg(a)                        -a
    round(x, places)              half up, the accounting convention: 2.345 -> 2.35
    round_even(x, places)         half to even (banker's rounding): 2.345 -> 2.34
    format_decimal(x, places)     fixed-point text rounded half up: 1234.5 -> "1234.50"
    signed(amount, indicator)     CRDT or C -> +amount, DBIT or D -> -amount (ISO 20022, MT940)
    format_date(value, out, in?)  an ISO date or datetime (or text read with strptime format `in`)
                                  written with strftime format `out`
    concat(a, b, ...)             join text; numbers are written exactly
    upper(s) lower(s)             change case
    pad_left(s, width, char)      pad on the left with `char` to `width` (longer text is kept whole)
    substr(s, start, length?)     `length` characters from 0-based `start` (to the end without it)
    default(x, fallback)          `fallback` when x is null or ""
    header(name)                  the message header `name` (null when absent)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Any

from jmespath import exceptions, functions, lexer, parser, visitor

from esb.errors import TransformError
from esb.loading.registry import did_you_mean
from esb.message import Message
from esb.transform import jsoncodec
from esb.transform.numbers import MAX_NUMBER_CHARS, NUMBER_TEXT, ascii_digits, fixed_point_chars, plain

FUNCTION_HELP: dict[str, str] = {
    "decimal": "decimal(x): text or a number as a Decimal; text that is not a number is an error",
    "ascii_digits": "ascii_digits(s): s with fullwidth and other Unicode digits written as ASCII 0-9 "
                    "(and fullwidth ．＋－ as . + -): ascii_digits('１２．５') -> '12.5'",
    "add": "add(a, b): a + b, exact",
    "sub": "sub(a, b): a - b, exact",
    "mul": "mul(a, b): a * b, exact",
    "div": "div(a, b): a / b to 34 significant digits; dividing by zero is an error",
    "neg": "neg(a): -a",
    "round": "round(x, places): rounded half up, the accounting convention (2.345 -> 2.35)",
    "round_even": "round_even(x, places): rounded half to even, banker's rounding (2.345 -> 2.34)",
    "format_decimal": "format_decimal(x, places): fixed-point text rounded half up (1234.5, 2 -> \"1234.50\")",
    "signed": "signed(amount, indicator): +amount for CRDT or C, -amount for DBIT or D",
    "format_date": "format_date(value, out_format, in_format?): an ISO date/datetime (or text read with "
                   "strptime in_format) written with strftime out_format ('%Y%m%d')",
    "concat": "concat(a, b, ...): the arguments joined as text; numbers are written exactly",
    "upper": "upper(s): s in capitals",
    "lower": "lower(s): s in small letters",
    "pad_left": "pad_left(s, width, char): s padded on the left with char to width (longer text is kept whole)",
    "substr": "substr(s, start, length?): length characters of s from the 0-based start (to the end without length)",
    "default": "default(x, fallback): fallback when x is null or \"\"",
    "header": "header(name): the message header of that name, null when absent",
}

# Amount arithmetic runs in contexts of its own, never the thread's (which any library may
# change). 34 digits is IEEE decimal128; where add/sub/mul/sum would have to round to fit,
# Inexact is trapped so a wrong amount becomes an error instead. The exponent stays within the
# number bound (numbers.py), so ten mul() in a row cannot make 1e999 a megabyte of digits.
_EXACT = Context(prec=34, rounding=ROUND_HALF_EVEN, Emax=MAX_NUMBER_CHARS - 1, Emin=-MAX_NUMBER_CHARS,
                 traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ROUNDED = Context(prec=34, rounding=ROUND_HALF_EVEN, Emax=MAX_NUMBER_CHARS - 1, Emin=-MAX_NUMBER_CHARS,
                   traps=[InvalidOperation, DivisionByZero, Overflow])
_INTEGER_TEXT = re.compile(r"[-+]?[0-9]+")
_ORDERING = frozenset({"lt", "gt", "lte", "gte"})
_CREDIT = frozenset({"CRDT", "C"})
_DEBIT = frozenset({"DBIT", "D"})
_MAX_PLACES = 28
_MAX_ARGS = {"format_date": 3, "substr": 3}  # optional last arguments (jmespath only knows "at least")
_ANY = {"types": []}
_MORE = {"types": [], "variadic": True}


class ExpressionError(ValueError):
    """An expression in an asset file is not valid; `hint` says how to fix it, when known."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@dataclasses.dataclass(frozen=True)
class Expression:
    """A compiled JMESPath expression; `reads_body` is False when it only reads headers."""

    text: str
    tree: dict = dataclasses.field(repr=False, compare=False)
    reads_body: bool = dataclasses.field(default=True, compare=False)

    def search(self, data: Any, headers: Mapping[str, Any] | None = None) -> Any:
        interpreter = _Interpreter(visitor.Options(custom_functions=_Functions(headers)))
        try:
            return interpreter.visit(self.tree, data)
        except TransformError as exc:
            raise TransformError(f"{exc.message} (in `{self.text}`)") from exc
        except (ValueError, TypeError, ArithmeticError, RecursionError) as exc:
            raise TransformError(f"the expression `{self.text}` failed: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> Expression:
    """Compile once: routes repeat the same expressions, and every message evaluates them."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, not {text!r}")
    try:
        tree = _Parser()._do_parse(text).parsed
    except exceptions.JMESPathError as exc:
        raise ExpressionError(_syntax_sentence(text, exc), _syntax_hint(exc)) from None
    _check_calls(text, tree)
    return Expression(text, tree, any(n["type"] in ("field", "current", "identity") for n in _nodes(tree)))


def is_true(value: Any) -> bool:
    """JMESPath truth: null, false, "", [] and {} are false; every number, 0 included, is true."""
    if value is None or value is False:
        return False
    return not (isinstance(value, (str, list, dict)) and len(value) == 0)


def text_comparisons(expression: Expression) -> list[str]:
    """The numeric-looking texts ('100') that an ordering comparison sets against a value read
    from the data: text orders as text, so '99.00' > '100' holds. For a validation warning."""
    found = []
    for node in _nodes(expression.tree):
        if node["type"] == "comparator" and node["value"] in _ORDERING:
            left, right = node["children"]
            found += [side["value"] for side, other in ((left, right), (right, left))
                      if _numeric_text(side) and other["type"] != "literal"]
    return found


def _numeric_text(node: dict) -> bool:
    value = node.get("value")
    return node["type"] == "literal" and isinstance(value, str) and bool(NUMBER_TEXT.fullmatch(value.strip()))


def search_message(expression: Expression, message: Message, kind: str) -> Any:
    """Evaluate over a message's JSON body, with its headers for header(); `kind` names the step."""
    if message.is_json:
        return expression.search(message.body, message.headers)
    if expression.reads_body:
        raise TransformError(f"{kind} needs a JSON body to evaluate `{expression.text}` (this one is "
                             f"{message.content_type}); add xml_to_json before it, or test only header(...)")
    return expression.search(None, message.headers)


# -- parsing ---------------------------------------------------------------------------------

class _Lexer(lexer.Lexer):
    """jmespath reads a `0.1` literal as a float; read it as Decimal, and refuse non-JSON literals
    (jmespath would guess a string and warn) so `OA` gets a clear error at load time."""

    def _consume_literal(self) -> dict:
        start = self._position
        lexeme = self._consume_until("`").replace("\\`", "`")
        try:
            value = json.loads(lexeme, parse_float=Decimal, parse_constant=_refuse_constant)
        except ValueError:
            raise exceptions.LexerError(lexer_position=start, lexer_value=lexeme,
                                        message=f"the literal `{lexeme}` is not JSON") from None
        return {"type": "literal", "value": value, "start": start, "end": self._position - start}


class _Parser(parser.Parser):
    """jmespath's parser with the lexer above (this mirrors Parser._parse of jmespath 1.x)."""

    def _parse(self, expression: str) -> parser.ParsedResult:
        self.tokenizer = _Lexer().tokenize(expression)
        self._tokens = list(self.tokenizer)
        self._index = 0
        parsed = self._expression(binding_power=0)
        if self._current_token() != "eof":
            token = self._lookahead_token(0)
            raise exceptions.ParseError(token["start"], token["value"], token["type"],
                                        f"Unexpected token: {token['value']}")
        return parser.ParsedResult(expression, parsed)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _syntax_sentence(text: str, exc: exceptions.JMESPathError) -> str:
    if isinstance(exc, exceptions.EmptyExpressionError):
        return "the expression is empty"
    start = f"the expression `{text}` is not valid JMESPath"
    if isinstance(exc, exceptions.IncompleteExpressionError):
        return f"{start}: it ends before it is complete"
    if isinstance(exc, exceptions.LexerError):
        return f"{start}: {exc.message} (column {exc.lexer_position + 1})"
    if isinstance(exc, exceptions.ParseError):
        return f"{start}: unexpected {exc.token_value!r} at column {exc.lex_position + 1}"
    return f"{start}: {exc}"


def _syntax_hint(exc: exceptions.JMESPathError) -> str:
    if isinstance(exc, exceptions.LexerError) and "literal" in exc.message:
        return f"write text as a raw string like '{exc.lexer_value}', numbers as literals like `12.50`"
    if isinstance(exc, exceptions.ParseError) and exc.token_type == "NUMBER":
        return f"write numbers in backticks, like `{exc.token_value}`"
    return "see https://jmespath.org/specification.html; constants are written 'text' or `12.50`"


def _nodes(tree: dict) -> Iterator[dict]:
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in node.get("children", ()) if isinstance(child, dict))


def _check_calls(text: str, tree: dict) -> None:
    """Unknown functions and wrong argument counts fail at load time, not on the first message."""
    for node in _nodes(tree):
        if node["type"] == "function_expression":
            problem = _call_problem(node["value"], len(node["children"]))
            if problem:
                raise ExpressionError(f"the expression `{text}` {problem[0]}", problem[1])


def _call_problem(name: str, count: int) -> tuple[str, str] | None:
    spec = _Functions.FUNCTION_TABLE.get(name)
    if spec is None:
        return f"calls {name}(), which is not a function", did_you_mean(name, sorted(_Functions.FUNCTION_TABLE))
    least = len(spec["signature"])
    variadic = bool(spec["signature"]) and spec["signature"][-1].get("variadic", False)
    most = _MAX_ARGS.get(name, None if variadic else least)
    if count < least or (most is not None and count > most):
        wanted = str(least) if most == least else f"{least} to {most}" if most else f"at least {least}"
        noun = "argument" if count == 1 else "arguments"
        return f"calls {name}() with {count} {noun}; it takes {wanted}", FUNCTION_HELP.get(name, f"see {name}()")
    return None


# -- evaluation ------------------------------------------------------------------------------

def _equal(x: Any, y: Any) -> bool:
    """JMESPath equality: a boolean equals only a boolean, at any depth (Python has True == 1)."""
    if isinstance(x, bool) or isinstance(y, bool):
        return isinstance(x, bool) and isinstance(y, bool) and x == y
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(map(_equal, x, y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_equal(value, y[key]) for key, value in x.items())
    return x == y


def _ordered(compare):
    """Ordering text against a number is an error: `'100' > `5`` would otherwise be silently null."""
    def ordered(left, right):
        if isinstance(left, str) != isinstance(right, str):
            raise TransformError(f"cannot compare {_describe(left)} with {_describe(right)}; "
                                 "turn text into a number with decimal(...)")
        return compare(left, right)
    return ordered


class _Interpreter(visitor.TreeInterpreter):
    COMPARATOR_FUNC = {**visitor.TreeInterpreter.COMPARATOR_FUNC,
                       "eq": _equal, "ne": lambda x, y: not _equal(x, y),
                       **{name: _ordered(f) for name, f in (("lt", operator.lt), ("gt", operator.gt),
                                                            ("lte", operator.le), ("gte", operator.ge))}}


def _with_decimal(names):
    return type(names)([*names, "Decimal"]) if "int" in names else names


class _Functions(functions.Functions):
    """The built-ins with Decimal as a number, plus esb's functions (see the module docstring)."""

    def __init__(self, headers: Mapping[str, Any] | None = None):
        self._headers = headers or {}

    def call_function(self, function_name: str, resolved_args: list) -> Any:
        try:
            return super().call_function(function_name, resolved_args)
        except exceptions.JMESPathTypeError as exc:
            wanted = " or ".join(exc.expected_types)
            raise TransformError(f"{function_name}() cannot take {_describe(exc.current_value)}; "
                                 f"it expects {wanted}") from None
        except ArithmeticError as exc:
            raise TransformError(f"{function_name}() {_arithmetic(exc)}") from None

    # Decimal is not in jmespath's table of Python types for "number".
    def _get_allowed_pytypes(self, types):
        allowed, subtypes = super()._get_allowed_pytypes(types)
        return _with_decimal(allowed), [_with_decimal(s) for s in subtypes]

    def _convert_to_jmespath_type(self, pyobject):
        return "number" if pyobject == "Decimal" else super()._convert_to_jmespath_type(pyobject)

    # -- built-ins that would give a float or lose digits --------------------------------

    @functions.signature({"types": ["number"]})
    def _func_abs(self, arg):
        return arg.copy_abs() if isinstance(arg, Decimal) else abs(arg)

    @functions.signature({"types": ["array-number"]})
    def _func_sum(self, arg):
        if all(type(x) is int for x in arg):
            return sum(arg)
        return functools.reduce(_EXACT.add, map(_number, arg), Decimal(0))

    @functions.signature({"types": ["array-number"]})
    def _func_avg(self, arg):
        return _ROUNDED.divide(_number(self._func_sum(arg)), Decimal(len(arg))) if arg else None

    @functions.signature(_ANY)
    def _func_to_number(self, arg):
        if isinstance(arg, (int, Decimal, float)) and not isinstance(arg, bool):
            return _number(arg) if isinstance(arg, float) else arg
        if not isinstance(arg, str) or not NUMBER_TEXT.fullmatch(arg.strip()):
            return None
        return _bounded("to_number", _read_number(arg.strip()), arg)

    @functions.signature({"types": ["array", "string"]}, _ANY)
    def _func_contains(self, subject, search):
        if isinstance(subject, str):
            return super()._func_contains(subject, search)
        return any(_equal(item, search) for item in subject)

    @functions.signature(_ANY)
    def _func_to_string(self, arg):
        return arg if isinstance(arg, str) else jsoncodec.dumps(arg)

    @functions.signature(_ANY)
    def _func_type(self, arg):
        if isinstance(arg, Decimal):
            return "number"
        return super()._func_type(arg)

    # -- numbers ------------------------------------------------------------------------

    @functions.signature(_ANY)
    def _func_decimal(self, x):
        return _to_decimal("decimal", x, "x")

    @functions.signature(_ANY)
    def _func_ascii_digits(self, s):
        return ascii_digits(_text("ascii_digits", s, "s"))

    @functions.signature(_ANY, _ANY)
    def _func_add(self, a, b):
        return _EXACT.add(_to_decimal("add", a, "a"), _to_decimal("add", b, "b"))

    @functions.signature(_ANY, _ANY)
    def _func_sub(self, a, b):
        return _EXACT.subtract(_to_decimal("sub", a, "a"), _to_decimal("sub", b, "b"))

    @functions.signature(_ANY, _ANY)
    def _func_mul(self, a, b):
        return _EXACT.multiply(_to_decimal("mul", a, "a"), _to_decimal("mul", b, "b"))

    @functions.signature(_ANY, _ANY)
    def _func_div(self, a, b):
        dividend, divisor = _to_decimal("div", a, "a"), _to_decimal("div", b, "b")
        if divisor.is_zero():
            raise TransformError(f"div() cannot divide {dividend} by zero")
        return _ROUNDED.divide(dividend, divisor)

    @functions.signature(_ANY)
    def _func_neg(self, a):
        return _to_decimal("neg", a, "a").copy_negate()

    @functions.signature(_ANY, _ANY)
    def _func_round(self, x, places):
        return _quantize("round", x, places, ROUND_HALF_UP)

    @functions.signature(_ANY, _ANY)
    def _func_round_even(self, x, places):
        return _quantize("round_even", x, places, ROUND_HALF_EVEN)

    @functions.signature(_ANY, _ANY)
    def _func_format_decimal(self, x, places):
        value = _quantize("format_decimal", x, places, ROUND_HALF_UP)
        return f"{value.copy_abs() if value.is_zero() else value:f}"  # never "-0.00"

    @functions.signature(_ANY, _ANY)
    def _func_signed(self, amount, indicator):
        value = _to_decimal("signed", amount, "amount")
        mark = indicator.strip().upper() if isinstance(indicator, str) else indicator
        if mark in _CREDIT:
            return value
        if mark in _DEBIT:
            return value.copy_negate()
        raise TransformError(f"signed() needs the indicator CRDT, C, DBIT or D, not {_describe(indicator)}")

    # -- text and dates -----------------------------------------------------------------

    @functions.signature(_ANY, _MORE)
    def _func_format_date(self, value, out_format, *in_format):
        moment = _read_date(value, _text("format_date", in_format[0], "in_format") if in_format else None)
        try:
            return moment.strftime(_text("format_date", out_format, "out_format"))
        except ValueError as exc:
            raise TransformError(f"format_date() cannot write the date with {out_format!r}: {exc}") from None

    @functions.signature(_MORE)
    def _func_concat(self, *parts):
        return "".join(_text("concat", part, f"argument {i}") for i, part in enumerate(parts, start=1))

    @functions.signature(_ANY)
    def _func_upper(self, s):
        return _text("upper", s, "s").upper()

    @functions.signature(_ANY)
    def _func_lower(self, s):
        return _text("lower", s, "s").lower()

    @functions.signature(_ANY, _ANY, _ANY)
    def _func_pad_left(self, s, width, char):
        fill = _text("pad_left", char, "char")
        if len(fill) != 1:
            raise TransformError(f"pad_left() needs one character to pad with, not {fill!r}")
        return _text("pad_left", s, "s").rjust(_count("pad_left", width, "width"), fill)

    @functions.signature(_ANY, _MORE)
    def _func_substr(self, s, start, *length):
        text, first = _text("substr", s, "s"), _count("substr", start, "start")
        end = first + _count("substr", length[0], "length") if length else None
        return text[first:end]

    @functions.signature(_ANY, _ANY)
    def _func_default(self, x, fallback):
        return fallback if x is None or x == "" else x

    @functions.signature(_ANY)
    def _func_header(self, name):
        return self._headers.get(_text("header", name, "name"))


# -- argument helpers ------------------------------------------------------------------------

def _number(value: Any) -> Decimal:
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest text that reads back as this float
    return value if isinstance(value, Decimal) else Decimal(value)


def _to_decimal(function: str, value: Any, name: str) -> Decimal:
    if isinstance(value, (int, Decimal, float)) and not isinstance(value, bool):
        number = _number(value)
        if number.is_finite():
            return number
    elif isinstance(value, str) and NUMBER_TEXT.fullmatch(value.strip()):
        return _bounded(function, Decimal(value.strip()), value)
    raise TransformError(f"{function}() needs a number for {name}, not {_describe(value)}" + _advice(value))


def _advice(value: Any) -> str:
    if value is None:
        return "; use default(field, `0`) if it may be missing"
    if isinstance(value, str) and not value.isascii() and NUMBER_TEXT.fullmatch(ascii_digits(value).strip()):
        return "; only ASCII digits are numbers: write ascii_digits(field) to read these as digits"
    return ""


def _read_number(text: str) -> int | Decimal:
    return Decimal(text) if not _INTEGER_TEXT.fullmatch(text) or len(text) > MAX_NUMBER_CHARS else int(text)


def _bounded(function: str, number: Any, text: str) -> Any:
    """Text such as "1e99999999" reads as a tiny Decimal that no one could ever write out."""
    if isinstance(number, Decimal) and fixed_point_chars(number) > MAX_NUMBER_CHARS:
        raise TransformError(f"{function}() cannot take {_describe(text)}: written out in full it would be "
                             f"{fixed_point_chars(number):,} characters, over the limit of {MAX_NUMBER_CHARS:,}")
    return number


def _quantize(function: str, x: Any, places: Any, rounding: str) -> Decimal:
    exponent = Decimal(1).scaleb(-_count(function, places, "places", _MAX_PLACES))
    return _to_decimal(function, x, "x").quantize(exponent, rounding=rounding, context=_ROUNDED)


def _count(function: str, value: Any, name: str, most: int = 100_000) -> int:
    """A whole number argument (places, width, start, length)."""
    whole = isinstance(value, int) or (isinstance(value, Decimal) and value.is_finite() and value % 1 == 0)
    if whole and not isinstance(value, bool) and 0 <= value <= most:
        return int(value)
    raise TransformError(f"{function}() needs a whole number from 0 to {most} for {name}, not {_describe(value)}")


def _text(function: str, value: Any, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return plain(value, f"{name} of {function}()")  # 1234.50 stays 1234.50; 1.00E+3 is 1000
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TransformError(f"{function}() needs text for {name}, not {_describe(value)}")


def _read_date(value: Any, in_format: str | None) -> datetime:
    text = _text("format_date", value, "value")
    try:
        return datetime.strptime(text, in_format) if in_format else datetime.fromisoformat(text)
    except ValueError:
        if in_format:
            raise TransformError(f"format_date() cannot read {text!r} with the format {in_format!r}") from None
        raise TransformError(f"format_date() cannot read {text!r} as an ISO date like 2024-03-31 or "
                             "2024-03-31T09:30:00; give its format as the third argument, e.g. '%d.%m.%Y'") from None


def _describe(value: Any) -> str:
    if value is None:
        return "null (a missing field?)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "an array"
    if isinstance(value, str):
        return f"the text {value[:40]!r}" + ("..." if len(value) > 40 else "")
    return f"the number {value}" if isinstance(value, (int, Decimal)) else type(value).__name__


def _arithmetic(exc: ArithmeticError) -> str:
    if isinstance(exc, Overflow):  # before Inexact: an Overflow is an Inexact too
        return f"gives a number too large to hold (over {MAX_NUMBER_CHARS:,} digits written out)"
    if isinstance(exc, Inexact):
        return "would have to round: the exact result needs more than 34 significant digits"
    if isinstance(exc, (DivisionByZero, ZeroDivisionError)):
        return "cannot divide by zero"
    return "cannot compute this (a result over 34 digits, or an undefined operation)"
