"""JSON for money: Decimal in, Decimal out, and nothing JSON does not allow."""

from __future__ import annotations

import collections
import datetime
import enum
import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esb.errors import TransformError
from esb.transform import jsoncodec
from esb.transform.jsoncodec import _reference_dumps, _reference_loads, dumps, loads
from esb.transform.numbers import MAX_NUMBER_CHARS


def test_a_fraction_keeps_its_digits():
    value = loads('{"amount": 0.10}')["amount"]
    assert isinstance(value, Decimal)
    assert str(value) == "0.10"


def test_integers_stay_integers_however_big():
    assert loads("[7, -0, 123456789012345678901234567890]") == [7, 0, 123456789012345678901234567890]
    assert all(type(n) is int for n in loads("[7, 123456789012345678901234567890]"))


@pytest.mark.parametrize("text, digits", [("1e-7", "1E-7"), ("1.5E+3", "1.5E+3"),
                                          ("-0.000", "-0.000"), ("18.150", "18.150")])
def test_exponents_and_trailing_zeros_are_kept_exactly(text, digits):
    assert str(loads(text)) == digits


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_numbers_are_refused(constant):
    with pytest.raises(TransformError, match=f"{constant.lstrip('-')} is not a JSON number"):
        loads(f'{{"amount": {constant}}}')


def test_a_duplicate_key_is_refused_even_when_nested():
    with pytest.raises(TransformError, match="the key 'amount' appears twice"):
        loads('{"entry": {"amount": 1, "currency": "EUR", "amount": 2}}')


@pytest.mark.parametrize("text", [r'{"memo": "ab\ud800"}', r'{"memo": "\udc00"}',
                                  r'{"\ud800key": 1}', r'["\ud83d x"]'])
def test_a_lone_surrogate_escape_is_refused(text):
    with pytest.raises(TransformError, match="lone surrogate"):
        loads(text)


def test_a_surrogate_pair_escape_is_one_character():
    assert loads(r'["\ud83d\ude00"]') == ["😀"]


def test_an_escaped_backslash_before_u_is_not_a_surrogate():
    assert loads(r'["\\ud800"]') == ["\\ud800"]


def test_invalid_utf8_is_refused_with_its_byte_position():
    with pytest.raises(TransformError, match="not valid UTF-8 at byte 10"):
        loads(b'{"name": "\xff"}')


def test_a_utf8_byte_order_mark_is_ignored():
    assert loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_a_syntax_error_gives_line_and_column():
    with pytest.raises(TransformError, match="line 2, column 9"):
        loads('{"a": 1,\n "b": 2,}')


def test_an_integer_longer_than_python_reads_is_a_transform_error():
    with pytest.raises(TransformError, match="a number is too long"):
        loads("1" * 5000)


def test_too_deep_nesting_is_a_transform_error():
    with pytest.raises(TransformError, match="nests too deeply"):
        loads("[" * 100_000 + "]" * 100_000)


def test_decimals_are_written_digit_for_digit():
    data = {"a": Decimal("0.10"), "b": Decimal("1E-7"), "c": Decimal("18.150"), "d": 10**30}
    assert dumps(data) == '{"a":0.10,"b":0.0000001,"c":18.150,"d":1000000000000000000000000000000}'


@pytest.mark.parametrize("value, text", [(Decimal("1.00E+3"), "1000"), (Decimal("1E+2"), "100"),
                                         (Decimal("-2.5E-7"), "-0.00000025"), (Decimal("0E+3"), "0"),
                                         (Decimal("1E+999"), "1" + "0" * 999)])
def test_json_never_writes_an_exponent(value, text):
    assert dumps({"amount": value}) == f'{{"amount":{text}}}'
    assert loads(dumps(value)) == value


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 900))
def test_a_written_decimal_reads_back_equal_and_has_no_exponent(value):
    text = dumps([value])
    assert "E" not in text and "e" not in text
    assert loads(text) == [value]


@pytest.mark.parametrize("text", ["１２", "[١٢٣]", '{"a": 1２}', "٣.5"])
def test_only_ascii_digits_make_a_json_number(text):
    with pytest.raises(TransformError, match="JSON syntax error"):
        loads(text)


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-sNaN")])
def test_a_non_finite_decimal_is_refused(value):
    with pytest.raises(TransformError, match=r"at \$\.x\[0\]"):
        dumps({"x": [value]})


def test_a_float_is_refused_with_its_path():
    with pytest.raises(TransformError, match=r"a float reached the JSON encoder at "
                                             r"\$\.entries\[1\]\.amount; money must be Decimal"):
        dumps({"entries": [{"amount": Decimal("1.00")}, {"amount": 1.0}]})


def test_a_float_key_is_refused():
    with pytest.raises(TransformError, match="a float reached the JSON encoder"):
        dumps({1.5: "x"})


def test_tuples_are_written_as_lists():
    assert dumps({"a": (1, "x", None, True)}) == '{"a":[1,"x",null,true]}'


def test_text_is_written_as_is_not_escaped_to_ascii():
    assert dumps({"name": "Šiaulių \"bankas\"\n"}) == '{"name":"Šiaulių \\"bankas\\"\\n"}'


def test_indent_gives_the_layout_of_json_dumps():
    data = {"a": [1, {"b": None}], "c": {}, "d": []}
    assert dumps(data, indent=2) == json.dumps(data, indent=2, ensure_ascii=False)


def test_an_unsupported_type_is_refused_with_its_path():
    with pytest.raises(TransformError, match=r"type set reached the JSON encoder at \$\.tags"):
        dumps({"tags": {"a"}})


def test_data_that_contains_itself_is_refused():
    loop: list = []
    loop.append(loop)
    with pytest.raises(TransformError, match="contains itself"):
        dumps(loop)


# JSON has one number type: loads reads an integer literal as int, so a Decimal with no
# fractional digits and no exponent (Decimal("5")) comes back as the int 5. Every other
# Decimal comes back with the same digits, exponent and sign.
def _canonical(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, Decimal):
        exact = value.as_tuple().exponent == 0
        return ("int", int(value)) if exact else ("decimal", str(value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return {key: _canonical(item) for key, item in value.items()}


_text = st.text(st.characters(codec="utf-8"), max_size=10)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(_json, st.sampled_from([None, 2]))
def test_dumps_then_loads_gives_back_the_same_data(value, indent):
    assert _canonical(loads(dumps(value, indent=indent))) == _canonical(value)


_plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=100, deadline=None)
@given(_plain_json, st.sampled_from([None, 0, 4]))
def test_without_decimals_the_text_is_what_json_dumps_writes(value, indent):
    separators = (",", ":") if indent is None else (",", ": ")
    expected = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    assert dumps(value, indent=indent) == expected


@pytest.mark.parametrize("text, field, size", [
    ('{"a": 1e99999999}', "$.a", "100,000,000"),
    ('{"a": [1, {"b": -1e-999999999999}]}', r"$.a[1].b", "1,000,000,000,002"),
    ('{"a": 0.' + "1" * 1000 + "}", "$.a", "1,002"),
])
def test_a_number_too_long_to_write_out_is_refused_when_read_naming_the_field(text, field, size):
    with pytest.raises(TransformError) as caught:
        loads(text)
    assert caught.value.message == (f"JSON refused: the number at {field} would be {size} characters long "
                                    "written out in full, over the limit of 1,000; no amount needs that many digits")


def test_a_number_as_long_as_the_limit_is_read():
    assert loads('{"a": 1e999}') == {"a": Decimal("1E+999")}
    with pytest.raises(TransformError, match="the limit of 3"):
        loads('{"a": 1.5e3}', max_number_chars=3)


def test_a_calculated_decimal_too_long_to_write_out_is_refused_with_its_path():
    with pytest.raises(TransformError, match=r"the number at \$\.v\[0\] would be 5,001 characters long"):
        dumps({"v": [Decimal("1E+5000")]})


# loads and dumps read and write through msgspec and fall back to the pure-Python reference for
# whatever msgspec refuses or cannot vouch for: both must give the same value (repr shows type,
# digits and key order), the same text, and the same refusal word for word.
def _outcome(call, *args):
    try:
        return "ok", repr(call(*args))
    except Exception as exc:  # noqa: BLE001 - the refusal is what is compared
        return type(exc), str(exc)


def _same_loads(data, limit=MAX_NUMBER_CHARS):
    assert _outcome(lambda: loads(data, max_number_chars=limit)) == _outcome(_reference_loads, data, limit)


def _same_dumps(value):
    assert _outcome(dumps, value) == _outcome(_reference_dumps, value, None)


_LOADS_CORPUS = [
    '{"claim": "CLM-1", "at": "2026-12-04T09:15:22+02:00", "lines": [{"amount": 123.45, "vat": 0.21}]}',
    "[]", "{}", '""', "0", "-0", "-0.0", "0.10", "1e5", "1E+2", "-2.5E-7", "1.5e3", "true", "false", "null",
    "123456789012345678901234567890", "1" * 4300, "-" + "1" * 4300, "1" * 4301, "1e999", "1e1000",
    "0." + "1" * 998, "0." + "1" * 999, "1e99999999", '{"a": [1, {"b": -1e-999999999999}]}',
    '{"a": 1, "a": 2}', '{"a": {"b": 1, "b": 1}}', '{"x": {"a": 1}, "x": {"a": 1}}', '{"a:b": 1, "a:b": 2}',
    '{"a": "\\u003a", "a": 1}', '{"\\u003a": 1, ":": 2}', '{"\\u003A": 1, "\\u003a": 2}', '{"k": "\\\\u003a"}',
    '{"k": "\\\\u003a", "k": 1}', '{"t": "10:00:00", "t": "11:00"}', '{"a": 1, "b": {"a": 1}}',
    r'{"memo": "ab\ud800"}', r'{"memo": "\udc00"}', r'{"\ud800key": 1}', r'["\ud83d x"]', r'["\ud83d\ude00"]',
    r'["\ud800\u0041"]', r'["\\ud800"]', '"\ud800"', "\ufeff[1]", "\ufeff", '["\\/", "\\u0000", "\u2028\x7f"]',
    "NaN", "Infinity", "-Infinity", '{"amount": NaN}', "[1,]", '{"a": 1,}', "[1 2]", "1 2", "", " ", "\n[1]\t\r ",
    "\x0c1", "\u00a01", '"a\tb"', '"a\x01b"', "01", "-01", "1.", ".5", "+1", "-", "1.0e+", "１２", "[١٢٣]", "٣.5",
    "tru", '{"a" 1}', "[" * 500 + "]" * 500, "[" * 100_000 + "]" * 100_000, "/* c */ 1",
]


@pytest.mark.parametrize("text", _LOADS_CORPUS)
def test_loads_reads_and_refuses_as_the_reference_does(text):
    _same_loads(text)
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        _same_loads(text.encode("utf-8"))


@pytest.mark.parametrize("data", [b'\xef\xbb\xbf{"a": 1}', b'{"name": "\xff"}', b'["\xed\xa0\x80"]', b'["\xc0\x80"]',
                                  bytearray(b'{"a": 1.5}'), memoryview(b'{"a": 1.5}'), 15, None])
def test_loads_takes_bytes_and_refuses_other_input_as_the_reference_does(data):
    _same_loads(data)


@pytest.mark.parametrize("text, limit", [('{"a": 1.5e3}', 3), ('{"a": 1.5e2}', 3), ('[1.25]', 3), ('[12345]', 3)])
def test_loads_applies_a_smaller_number_limit_as_the_reference_does(text, limit):
    _same_loads(text, limit)


_key_text = st.sampled_from(['"a"', '"b"', '"a:b"', '":"', r'"\u003a"', r'"\u003A"', r'"\\u003a"', '"é"',
                             r'"\u00e9"', r'"\ud800"', r'"\ud83d\ude00"', '"\\"'])
_scalar_text = (st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][-+]?[0-9]{1,4})?", fullmatch=True)
                | st.sampled_from(["true", "false", "null", "NaN", "-Infinity", '"x:y"', r'"\u0041"', r'"\udc00"',
                                   r'"\u003a"', '"\x01"', "01", "1.", "[", "}"])
                | st.text(st.characters(codec="utf-8"), max_size=8).map(json.dumps)
                | st.text(st.characters(codec="utf-8"), max_size=8).map(lambda s: json.dumps(s, ensure_ascii=False)))
_document_text = st.recursive(
    _scalar_text,
    lambda inner: st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
    | st.lists(st.tuples(_key_text, inner), max_size=4).map(
        lambda pairs: "{" + ", ".join(f"{key}: {value}" for key, value in pairs) + "}"),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_document_text)
def test_loads_matches_the_reference_on_generated_documents(text):
    _same_loads(text)
    _same_loads(text.encode("utf-8", "surrogatepass"))


class _Colour(enum.Enum):
    RED = "red"


class _Code(enum.StrEnum):
    EUR = "EUR"


class _Level(enum.IntEnum):
    HIGH = 3


class _Tag(str):
    pass


_loop: list = []
_loop.append(_loop)

_DUMPS_CORPUS = [
    {"claim": "CLM-1", "lines": [{"amount": Decimal("123.45"), "vat": Decimal("0.21")}], "paid": False},
    Decimal("1E+2"), Decimal("1.00E+3"), Decimal("-0"), Decimal("-0.000"), Decimal("0E+3"), Decimal("1E-7"),
    Decimal("1E+999"), Decimal("1E+1000"), Decimal("0." + "1" * 998), Decimal("0." + "1" * 999), Decimal("NaN"),
    Decimal("-Infinity"), Decimal("sNaN"), 10**30, -(2**64), 10**4299, 10**4300, True, None, "", (1, "x"), [],
    {}, "\x00\x1f\x7f\"\\/\b\f\n\r\t\u2028é😀", "\ud800", {"k\udc00": 1}, 1.5, float("nan"), {"a": [1, 2.0]},
    {1: "a"}, {True: 1}, {None: 1}, {1.5: 1}, {Decimal("1.5"): 1}, {("a",): 1}, {_Code.EUR: 1}, {_Tag("k"): 1},
    {"a"}, frozenset(), b"ab", bytearray(b"ab"), datetime.date(2026, 12, 4), uuid.UUID(int=1), _Colour.RED,
    _Code.EUR, _Level.HIGH, _Tag("t"), collections.OrderedDict(a=1), collections.namedtuple("P", "x y")(1, 2),
    _loop, [[[[[Decimal("1.5")]]]]], [[]] * 3,
]


@pytest.mark.parametrize("value", _DUMPS_CORPUS, ids=range(len(_DUMPS_CORPUS)))
def test_dumps_writes_and_refuses_as_the_reference_does(value):
    _same_dumps(value)


def test_dumps_writes_every_character_as_the_reference_does():
    _same_dumps("".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF))


_any_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.decimals() | st.floats() | _text
    | st.sampled_from([Decimal("1E+1001"), _Colour.RED, _Level.HIGH, _Tag("t"), b"x", datetime.date(2026, 1, 1)]),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(_text | st.integers() | st.sampled_from([None, 1.5, True]), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(_any_value)
def test_dumps_matches_the_reference_on_generated_values(value):
    _same_dumps(value)


def test_a_plain_document_is_read_and_written_without_the_reference(monkeypatch):
    def reference(*_):
        raise AssertionError("the reference path was taken")

    claim = {"id": "CLM-1", "at": "09:15", "lines": [{"amount": Decimal("1.50"), "n": 1, "ok": True, "x": None}],
             "tags": ("a", "b"), "memo": "Šiaulių \"bankas\"\n"}
    monkeypatch.setattr(jsoncodec, "_reference_loads", reference)
    monkeypatch.setattr(jsoncodec, "_reference_dumps", reference)
    text = dumps(claim)
    assert loads(text) == loads(text.encode()) == {**claim, "tags": ["a", "b"]}


# -- the text kept beside the value --------------------------------------------------------------
def test_the_text_is_kept_when_writing_the_value_would_mean_the_same_numbers():
    text = b'{ "amount": 1234.50, "lines": [ {"qty": 2, "price": "0.10"} ], "memo": "1e5 in a string" }'
    value, kept = jsoncodec.loads_keeping_text(text)
    assert value == {"amount": Decimal("1234.50"), "lines": [{"qty": 2, "price": "0.10"}], "memo": "1e5 in a string"}
    assert kept is text


@pytest.mark.parametrize("number", ["1E+3", "1.5e2", "2.50E-1"])
def test_the_text_is_not_kept_when_a_number_has_an_exponent_which_esb_writes_out_in_full(number):
    value, kept = jsoncodec.loads_keeping_text(f'{{"amount": {number}}}'.encode())
    assert kept is None and dumps(value) == f'{{"amount":{Decimal(number):f}}}'


def test_keeping_the_text_refuses_what_loads_refuses_and_keeps_no_state_between_documents():
    with pytest.raises(TransformError, match="appears twice"):
        jsoncodec.loads_keeping_text(b'{"a": 1, "a": 2}')
    assert jsoncodec.loads_keeping_text(b'{"a": 1e3}')[1] is None
    assert jsoncodec.loads_keeping_text(b'{"a": 1.5}')[1] == b'{"a": 1.5}'  # the exponent seen before is forgotten
