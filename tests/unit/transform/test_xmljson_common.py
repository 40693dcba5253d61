"""json_to_xml's common-case writer gives the general writer's XML byte for byte, and leaves the rest to it."""

from __future__ import annotations

import collections
import enum
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.common import expense
from esb.errors import TransformError
from esb.transform import xmljson
from esb.transform.numbers import MAX_NUMBER_CHARS, fixed_point, fixed_point_chars
from esb.transform.safexml import LIBXML2_MAX_DEPTH


class Currency(enum.StrEnum):
    CNY = "CNY"


def general(name, value, digits=MAX_NUMBER_CHARS):
    """The general writer's document: the reference."""
    out: list[str] = []
    xmljson._write(out, name, value, xmljson._XML_SCOPE, f"$.{name}", 1, digits)
    return "".join(out)


def common(name, value, digits=MAX_NUMBER_CHARS):
    """The common-case writer's document, or None where it hands the document on."""
    out: list[str] = []
    try:
        assert xmljson._plain_name(name)
        xmljson._write_common(out, name, value, 1, digits)
    except (xmljson._Unusual, TransformError, ValueError):
        return None
    return "".join(out)


def converted(value, root="Voucher", **options):
    """What the json_to_xml step makes of a body: wrapped in `root`."""
    return xmljson.json_to_xml({root: value}, root=root, **options)


def nested(depth):
    value = "deep"
    for _ in range(depth - 1):
        value = {"n": value}
    return value


WRITTEN_BY_BOTH = {
    "the bench's claim": expense(7),
    "another claim": expense(996),
    "non-ASCII text and names": {"金额": Decimal("1106.05"), "摘要": "差旅费-上海至北京", "é": "café 😀 \u00a0\ufffd"},
    "text XML escapes": {"t": "a & b < c > d \"q\" 'a'", "cr": "one\r\ntwo\tthree", "gt": "]]>"},
    "nested lists": {"a": [{"b": [1, 2, {"c": None}]}, "x", None, {}], "t": ("p", "q"), "e": []},
    "null, empty and bool": {"n": None, "e": {}, "only_empty": {"l": []}, "t": True, "f": False},
    "ints": {"z": 0, "neg": -42, "big": 10 ** 50, "neg_big": -(10 ** 40)},
    "Decimals": {"big": Decimal("123456789012345678901234567890.123456789"), "neg_zero": Decimal("-0"),
                 "neg_zero_cents": Decimal("-0.00"), "exp": Decimal("1.00E+3"), "tiny": Decimal("1E-7"),
                 "small": Decimal("0.000001"), "zero_exp": Decimal("0E-9"), "neg": Decimal("-86.40")},
    "names XML allows": {"_x": 1, "a-b.c": 2, "A1": 3, "x·y": 4},
    "depth at the limit": nested(LIBXML2_MAX_DEPTH),
}

ONLY_GENERAL = {  # written, but by the general writer
    "an attribute and text": {"a": {"@id": "1", "#text": "x"}},
    "a bound prefix": {"p": {"@xmlns:q": "urn:q", "q:x": "1"}},
    "xml:lang": {"p": {"xml:lang": "de"}},
    "a str subclass": {"c": Currency.CNY},
    "an int subclass": {"c": True.__class__(1), "i": type("Int", (int,), {})(5)},
    "an OrderedDict": {"o": collections.OrderedDict(a=1)},
    "a list subclass": {"l": type("L", (list,), {})([1, 2])},
    "no element under a name XML refuses": {"1x": [], "a": 1},
}

REFUSED = {
    "a control character": {"t": "a\x00b"},
    "a unit separator": {"t": "\x1f"},
    "a noncharacter": {"t": "\ufffe"},
    "a lone surrogate": {"t": "\ud800"},
    "a name starting with a digit": {"1a": 1},
    "a name with a blank": {"a b": 1},
    "an empty name": {"": 1},
    "an unbound prefix": {"p:x": 1},
    "a key that is not a string": {1: "x"},
    "a list in a list": {"a": [[1]]},
    "an attribute that is a list": {"a": None, "@id": []},
    "a float": {"f": 1.5},
    "NaN": {"d": Decimal("NaN")},
    "Infinity": {"d": Decimal("-Infinity")},
    "a number too long": {"d": Decimal("1E+2000")},
    "an int too long to write": {"i": 10 ** 5000},
    "too deep": nested(LIBXML2_MAX_DEPTH + 1),
}


@pytest.mark.parametrize("case", WRITTEN_BY_BOTH)
def test_the_common_writer_writes_what_the_general_writer_writes(case):
    value = WRITTEN_BY_BOTH[case]
    assert common("Voucher", value) == general("Voucher", value)
    assert converted(value) == f"{xmljson.XML_DECLARATION}\n{general('Voucher', value)}"


@pytest.mark.parametrize("case", ONLY_GENERAL)
def test_what_the_common_writer_does_not_cover_the_general_writer_writes(case):
    value = ONLY_GENERAL[case]
    assert common("Voucher", value) is None
    assert converted(value) == f"{xmljson.XML_DECLARATION}\n{general('Voucher', value)}"


@pytest.mark.parametrize("case", REFUSED)
def test_what_xml_cannot_carry_is_refused_with_the_general_writers_message(case):
    value = REFUSED[case]
    assert common("Voucher", value) is None
    with pytest.raises(TransformError) as expected:
        general("Voucher", value)
    with pytest.raises(TransformError) as refused:
        converted(value)
    assert refused.value.message == expected.value.message


def test_a_number_over_a_chosen_limit_is_refused_by_both_writers():
    value = {"d": Decimal("12345.67")}
    assert common("V", value, digits=8) == general("V", value, digits=8) == "<V><d>12345.67</d></V>"
    assert common("V", value, digits=7) is None
    with pytest.raises(TransformError, match=r"\$\.V\.d"):
        converted(value, "V", max_number_chars=7)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12),
                     st.decimals(allow_nan=False, allow_infinity=False, places=6))
_names = st.sampled_from(["a", "b", "金额", "line_no", "x-y", "é", "@id", "#text", "1x", "p:q"])
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_names, inner, max_size=4)), max_leaves=20)


@given(st.dictionaries(_names, _values, max_size=5))
@settings(max_examples=400, deadline=None)
def test_generated_documents_come_out_as_the_general_writer_writes_them(value):
    try:
        reference = general("Doc", value)
    except TransformError as exc:
        with pytest.raises(TransformError) as refused:
            converted(value, "Doc")
        assert refused.value.message == exc.message
        return
    assert common("Doc", value) in (None, reference)
    assert converted(value, "Doc") == f"{xmljson.XML_DECLARATION}\n{reference}"


@given(st.decimals(allow_nan=False, allow_infinity=False))
@settings(max_examples=500, deadline=None)
def test_fixed_point_writes_what_format_writes(value):
    text = format(value, "f")
    assert fixed_point_chars(value) == len(text)
    if len(text) <= MAX_NUMBER_CHARS:
        assert fixed_point(value, "x") == text


def test_every_printable_character_but_the_three_escapes_is_one_xml_takes_as_it_is():
    """The common writer passes printable text without the regex: none of it may need the regex."""
    needing = [cp for cp in range(0x110000) if chr(cp).isprintable() and chr(cp) not in "&<>"
               and xmljson._TEXT_SPECIAL.search(chr(cp))]
    assert needing == []
