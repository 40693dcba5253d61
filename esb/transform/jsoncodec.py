"""JSON for money: non-integers read as Decimal, written exactly without an exponent, and no float ever.

msgspec (C) reads and writes the common document; the pure-Python codec below it stays the reference
and judges every document msgspec refuses or cannot vouch for, so both give the same values, text and
refusals (tests/unit/transform/test_jsoncodec.py holds them to it).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any

import msgspec

from esb.errors import TransformError
from esb.transform.numbers import MAX_NUMBER_CHARS, fixed_point_chars, too_long

# A JSON "\ud800" escape decodes to a lone surrogate that later breaks UTF-8 encoding; only a
# document that holds a surrogate escape (or, as str, a raw surrogate) is walked to find one.
_SURROGATE_HINT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

_quote = encode_basestring


def loads(data: bytes | str, *, max_number_chars: int = MAX_NUMBER_CHARS) -> Any:
    """Parse JSON; non-integers become Decimal, integers int. Refuses what JSON does not allow,
    and a number whose fixed-point text would be over `max_number_chars` (1e99999999)."""
    value = _fast_loads(data, max_number_chars)
    return value if value is not _MISSED else _reference_loads(data, max_number_chars)


def loads_keeping_text(data: bytes) -> tuple[Any, bytes | None]:
    """`loads`, and `data` itself when it is what `dumps` of the value would mean, number for
    number, so that it can be sent on as it came while the value stays unchanged (one writing of
    the body fewer per hop). None when the text writes a number with an exponent (esb writes 1E+3
    as 1000, as a ledger reads it) or needed the reference reader."""
    _exponent.seen = False
    value = _fast_loads(data, MAX_NUMBER_CHARS) if type(data) is bytes else _MISSED
    if value is _MISSED:
        return _reference_loads(data, MAX_NUMBER_CHARS), None
    return value, None if _exponent.seen else data


_MISSED = object()
_exponent = threading.local()  # `seen`: the document being read on this thread wrote one


def _fast_loads(data: bytes | str, max_number_chars: int) -> Any:
    """msgspec's reading of data, or _MISSED for whatever the reference must read or refuse."""
    if type(data) is bytes or type(data) is str:
        try:
            value = _fast_decoder(max_number_chars).decode(data)
        except Exception:  # noqa: BLE001 - the reference reads it or refuses it in its own words
            return _MISSED
        if _no_pair_dropped(data, value):
            return value
    return _MISSED


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Serialise to JSON text; Decimals are written digit for digit in fixed point (1000, never
    1.00E+3), a float is refused, and so is a Decimal that loads would refuse as too long (it
    could only have come from a calculation)."""
    if indent is None:  # the indented layout is for people (the CLI), not the hot path
        try:
            text = _ENCODER.encode(obj)
        except Exception:  # noqa: BLE001 - the reference writes it or refuses it in its own words
            pass
        else:
            if _only_json_types(obj):
                return text.decode("utf-8")
    return _reference_dumps(obj, indent)


# msgspec keeps the last of two equal keys without a word. A dropped pair takes its own ":" with it,
# and every other ":" of the text sits in a string, which re-encoding writes back as ":" (an escaped
# one, \u003a, included), so equal counts mean nothing was dropped. An escaped backslash before
# "u003a" only raises the text's count, and a mismatch merely sends the document to the reference.
def _no_pair_dropped(data: bytes | str, value: Any) -> bool:
    colon, escape, escaped_colons = _COLONS[type(data)]
    in_text = data.count(colon)
    if escape in data:  # rare, and counting one byte is ~3x cheaper than counting these
        in_text += sum(data.count(escaped) for escaped in escaped_colons)
    return in_text == 0 or _COLON_COUNTER.encode(value).count(b":") == in_text


_COLONS = {bytes: (b":", b"\\u003", (b"\\u003a", b"\\u003A")), str: (":", "\\u003", ("\\u003a", "\\u003A"))}
_COLON_COUNTER = msgspec.json.Encoder()  # Decimals as quoted digits: no ":" in them either way


def _only_json_types(obj: Any) -> bool:
    """msgspec also writes floats, sets, bytes, dates, enums and non-str keys, which the reference
    refuses or writes its own way; only a tree of exactly these types is msgspec's to write. Call it
    after msgspec has encoded obj: that proved the tree finite (a loop is a RecursionError there)."""
    todo = [obj]
    while todo:
        node = todo.pop()
        kind = type(node)
        if kind is dict:
            if not _STR.issuperset(map(type, node)):
                return False
            node = node.values()
        elif kind is not list and kind is not tuple:
            return kind in _LEAVES  # only obj itself: just containers are pushed
        for child in node:
            kind = type(child)
            if kind not in _LEAVES:
                if kind not in _CONTAINERS:
                    return False
                todo.append(child)
    return True


_STR = frozenset({str})
_LEAVES = frozenset({str, int, Decimal, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})


def _decimal_raw(d: Decimal) -> msgspec.Raw:
    return msgspec.Raw(_decimal(d))  # the reference's text; its refusals raise through msgspec


_ENCODER = msgspec.json.Encoder(decimal_format=_decimal_raw)


def _reference_loads(data: bytes | str, max_number_chars: int) -> Any:
    text = _decode(data)
    try:
        value = _decoder(max_number_chars).decode(text)
    except _NumberTooLong:
        raise _number_refusal(text, max_number_chars) from None
    except json.JSONDecodeError as exc:
        raise TransformError(f"JSON syntax error at line {exc.lineno}, column {exc.colno}: "
                             f"{exc.msg}") from None
    except RecursionError:
        raise TransformError("JSON refused: the document nests too deeply to parse") from None
    except ValueError as exc:  # CPython's limit on the digits of an int (4300 by default)
        raise TransformError(f"JSON refused: a number is too long ({exc})") from None
    # Strict UTF-8 bytes cannot hold a surrogate, so bytes need the regex only when they hold a
    # \u escape: the `in` test is ~10x cheaper than the regex on a 1 KB message.
    if ("\\u" in text or isinstance(data, str)) and _SURROGATE_HINT.search(text):
        _refuse_lone_surrogates(value)
    return value


def _reference_dumps(obj: Any, indent: int | None) -> str:
    out: list[str] = []
    try:
        _encode(obj, out, None if indent is None else "\n", " " * (indent or 0))
    except _Unencodable as exc:
        raise _refusal(obj, exc.value) from None
    except RecursionError:
        raise TransformError("JSON encoding failed: the data nests too deeply or contains "
                             "itself") from None
    return "".join(out)


class _Unencodable(Exception):
    def __init__(self, value: Any):
        self.value = value


# The stdlib's C encoder has no hook for Decimal (its `default` can only return a value it then
# quotes) and none to refuse a float, so this walk is ours. On a 0.7 MB document it takes ~1.5x
# the time of json.dumps(default=str), and beat the C encoder plus the placeholder substitution
# and float scan it would need (measured, CPython 3.11). Common types come first in the chain.
def _encode(o: Any, out: list[str], newline: str | None, step: str) -> None:
    t = type(o)
    if t is str:
        out.append(_quote(o))
    elif t is dict:
        _encode_dict(o, out, newline, step)
    elif t is Decimal:
        out.append(_decimal(o))
    elif t is int:
        out.append(int.__repr__(o))
    elif t is list or t is tuple:
        _encode_list(o, out, newline, step)
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    else:
        _encode_other(o, out, newline, step)


def _encode_dict(o: dict, out: list[str], newline: str | None, step: str) -> None:
    if not o:
        out.append("{}")
        return
    inner = None if newline is None else newline + step
    item_sep, key_sep = (",", ":") if inner is None else ("," + inner, ": ")
    out.append("{" if inner is None else "{" + inner)
    first = True
    for key, value in o.items():
        if not first:
            out.append(item_sep)
        first = False
        out.append(_quote(key) if type(key) is str else _key(key))
        out.append(key_sep)
        _encode(value, out, inner, step)
    out.append("}" if newline is None else newline + "}")


def _encode_list(o: list | tuple, out: list[str], newline: str | None, step: str) -> None:
    if not o:
        out.append("[]")
        return
    inner = None if newline is None else newline + step
    out.append("[" if inner is None else "[" + inner)
    item_sep = "," if inner is None else "," + inner
    first = True
    for value in o:
        if not first:
            out.append(item_sep)
        first = False
        _encode(value, out, inner, step)
    out.append("]" if newline is None else newline + "]")


def _encode_other(o: Any, out: list[str], newline: str | None, step: str) -> None:
    """Subclasses of the JSON types (enums, OrderedDict); anything else is refused."""
    if isinstance(o, bool):
        out.append("true" if o else "false")
    elif isinstance(o, str):
        out.append(_quote(o))
    elif isinstance(o, int):
        out.append(int.__repr__(o))
    elif isinstance(o, Decimal):
        out.append(_decimal(o))
    elif isinstance(o, dict):
        _encode_dict(o, out, newline, step)
    elif isinstance(o, (list, tuple)):
        _encode_list(o, out, newline, step)
    else:
        raise _Unencodable(o)


def _decimal(d: Decimal) -> str:
    if not d.is_finite():
        raise _Unencodable(d)
    text = str(d)  # "1.50", "-0"; only str's exponent form ("1E-7", "1.00E+3") needs more work
    if "E" in text:
        # Written in full, as a ledger or a payment reference reads it: 1.00E+3 is 1000. The
        # exponent is what makes the text long ("1E+99999999"), so count before writing.
        if fixed_point_chars(d) > MAX_NUMBER_CHARS:
            raise _Unencodable(d)
        return format(d, "f")
    if len(text) > MAX_NUMBER_CHARS:
        raise _Unencodable(d)
    return text


def _key(key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return _quote(str(int(key)))  # as json.dumps does
    if isinstance(key, str):
        return _quote(key)
    raise _Unencodable(key)


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"JSON input must be bytes or str, not {type(data).__name__}")
    try:
        return bytes(data).decode("utf-8-sig")  # RFC 8259 lets a parser ignore a BOM
    except UnicodeDecodeError as exc:
        raise TransformError(f"JSON refused: the bytes are not valid UTF-8 at byte {exc.start} "
                             f"({exc.reason})") from None


def _refuse_constant(name: str) -> Any:
    raise TransformError(f"JSON refused: {name} is not a JSON number (RFC 8259); "
                         "send amounts as decimal numbers")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise TransformError(f"JSON refused: the key {duplicate!r} appears twice in one object")
    return obj


class _NumberTooLong(Exception):
    pass


@lru_cache(maxsize=4)
def _parse_float(max_number_chars: int) -> Callable[[str], Decimal]:
    def parse_float(literal: str) -> Decimal:
        value = Decimal(literal)
        if "e" in literal or "E" in literal:
            _exponent.seen = True  # loads_keeping_text: this text is not the one esb would write
        if _too_long_literal(literal, value, max_number_chars):
            raise _NumberTooLong
        return value

    return parse_float


@lru_cache(maxsize=4)
def _decoder(max_number_chars: int) -> json.JSONDecoder:
    """Built once per limit, like json.loads's own default decoder (json.loads with arguments
    builds one per call); a decoder keeps no state between documents, so threads share it."""
    return json.JSONDecoder(parse_float=_parse_float(max_number_chars), parse_constant=_refuse_constant,
                            object_pairs_hook=_unique_keys)


@lru_cache(maxsize=4)
def _fast_decoder(max_number_chars: int) -> msgspec.json.Decoder:
    # msgspec refuses NaN/Infinity, lone surrogates, invalid UTF-8 and a BOM itself; a too-long
    # number raises here and the reference names it. Both stop nesting at the interpreter's
    # recursion limit, msgspec 3 levels deeper (it runs without the reference's Python frames): a
    # document nested ~995 deep may now be read. Decoders and encoders are thread-safe (msgspec 0.16).
    return msgspec.json.Decoder(float_hook=_parse_float(max_number_chars))


def _too_long_literal(literal: str, value: Decimal, limit: int) -> bool:
    # Without an exponent a JSON number's text is its fixed-point text (~0.1 µs to check).
    return len(literal) > limit or (("e" in literal or "E" in literal) and fixed_point_chars(value) > limit)


def _number_refusal(text: str, limit: int) -> TransformError:
    """Parse again, marking the overlong numbers, to name the first one's place in the document."""
    marks: list[Decimal] = []

    def mark(literal: str) -> Any:
        value = Decimal(literal)
        if not _too_long_literal(literal, value, limit):
            return None
        marks.append(value)
        return value

    ignore = lambda _: None  # noqa: E731 - other refusals do not matter here
    try:
        value = json.JSONDecoder(parse_float=mark, parse_int=ignore, parse_constant=ignore).decode(text)
    except (ValueError, RecursionError):  # the document is broken after the number as well
        value = None
    path = next((path for path, node in _walk(value) if marks and node is marks[0]), "$")
    reason = too_long(marks[0], path, limit) if marks else None
    return TransformError(f"JSON refused: {reason or 'a number is too long to write out in full'}")


def _refuse_lone_surrogates(value: Any) -> None:
    for path, node in _walk(value):
        if isinstance(node, str) and (found := _SURROGATE.search(node)):
            raise TransformError(f"JSON refused: the text at {path} holds a lone surrogate "
                                 f"(U+{ord(found.group()):04X}), which is not valid Unicode")


def _walk(value: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Yield (path, node) for every node and dict key in document order, without recursion."""
    stack = [(path, value)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if isinstance(node, dict):
            children = []
            for key, item in node.items():
                children += [(f"{path} (the key {key!r})", key), (f"{path}.{key}", item)]
            stack.extend(reversed(children))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed([(f"{path}[{i}]", item) for i, item in enumerate(node)]))


def _refusal(obj: Any, value: Any) -> TransformError:
    """Say where the value the encoder could not take sits in the document."""
    path = next((path for path, node in _walk(obj) if node is value), "$")
    if isinstance(value, float):
        return TransformError(f"a float reached the JSON encoder at {path}; money must be Decimal")
    if isinstance(value, Decimal) and value.is_finite():
        return TransformError(too_long(value, path, MAX_NUMBER_CHARS) or f"the Decimal at {path} is too long")
    if isinstance(value, Decimal):
        return TransformError(f"the Decimal {value} at {path} is not a number JSON can carry")
    return TransformError(f"a value of type {type(value).__name__} reached the JSON encoder at "
                          f"{path}; only dict, list, str, int, Decimal, bool and None can be encoded")
