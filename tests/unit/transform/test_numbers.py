"""The bound on a number's fixed-point text, computed from its exponent before anything is written."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esb.errors import PermanentError, TransformError
from esb.transform.numbers import NUMBER_TEXT, ascii_digits, fixed_point, fixed_point_chars, plain, too_long

_decimals = st.builds(lambda sign, digits, exponent: Decimal((sign, digits, exponent)),
                      st.integers(0, 1), st.lists(st.integers(0, 9), min_size=1, max_size=30).map(tuple),
                      st.integers(-60, 60))


@given(_decimals)
def test_the_counted_length_is_the_length_format_writes(value):
    assert fixed_point_chars(value) == len(format(value, "f"))


def test_an_absurd_exponent_is_counted_without_writing_the_number():
    assert fixed_point_chars(Decimal("1e99999999")) == 100_000_000
    assert fixed_point_chars(Decimal("-1e-999999999999")) == 1_000_000_000_002


def test_a_number_within_the_limit_is_written_digit_for_digit():
    assert fixed_point(Decimal("1.2E+3"), "$.a") == "1200"
    assert fixed_point(Decimal("1E+999"), "$.a") == "1" + "0" * 999  # 1,000 characters: the limit


def test_a_number_over_the_limit_is_a_permanent_error_naming_the_field():
    with pytest.raises(TransformError) as caught:
        fixed_point(Decimal("1E+1000"), "$.Doc.Amt")
    assert isinstance(caught.value, PermanentError)
    assert caught.value.message == ("the number at $.Doc.Amt would be 1,001 characters long written out in "
                                    "full, over the limit of 1,000; no amount needs that many digits")


def test_the_limit_can_be_chosen():
    assert too_long(Decimal("12345"), "$.n", limit=5) is None
    assert "the limit of 4" in too_long(Decimal("12345"), "$.n", limit=4)


@pytest.mark.parametrize("value, text", [(Decimal("1.00E+3"), "1000"), (Decimal("1E-7"), "0.0000001"),
                                         (Decimal("12.50"), "12.50"), (Decimal("NaN"), "NaN")])
def test_plain_text_has_no_exponent(value, text):
    assert plain(value, "$.a") == text


def test_plain_text_keeps_the_bound():
    with pytest.raises(TransformError, match="1,001 characters long"):
        plain(Decimal("1E+1000"), "$.a")


@pytest.mark.parametrize("text", ["12.50", "-3", "+.5", "1e3", "7."])
def test_ascii_number_text_is_a_number(text):
    assert NUMBER_TEXT.fullmatch(text)


@pytest.mark.parametrize("text", ["１２", "١٢٣", "12.٥", "۱۲", "१२", "1_000", "12,50", ""])
def test_only_ascii_digits_make_number_text(text):
    assert not NUMBER_TEXT.fullmatch(text)


@pytest.mark.parametrize("text, ascii", [("１２．５０", "12.50"), ("－１２", "-12"), ("١٢٣", "123"),
                                         ("۱۲", "12"), ("१२", "12"), ("No.１ 号", "No.1 号"), ("12.50", "12.50")])
def test_ascii_digits_writes_every_unicode_digit_as_ascii(text, ascii):
    assert ascii_digits(text) == ascii
