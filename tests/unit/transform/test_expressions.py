"""JMESPath with money-safe numbers: Decimal in, Decimal out, and finance functions with clear errors."""

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esb.errors import TransformError
from esb.message import XML, Message
from esb.transform import expressions, jsoncodec
from esb.transform.expressions import (
    FUNCTION_HELP,
    ExpressionError,
    compile_expression,
    is_true,
    search_message,
)


def search(text, data=None, headers=None):
    return compile_expression(text).search(data, headers)


def no_float(value) -> bool:
    if isinstance(value, dict):
        return all(no_float(v) for v in value.values())
    if isinstance(value, list):
        return all(no_float(v) for v in value)
    return not isinstance(value, float)


def failure(text, data=None, headers=None) -> str:
    with pytest.raises(TransformError) as caught:
        search(text, data, headers)
    return caught.value.message


AMOUNTS = {"lines": [{"amount": Decimal("0.10")}, {"amount": Decimal("0.20")}, {"amount": 3}]}


# -- compiling ------------------------------------------------------------------------------

def test_syntax_error_names_the_expression_in_one_sentence():
    with pytest.raises(ExpressionError) as caught:
        compile_expression("total >")
    assert str(caught.value).startswith("the expression `total >` is not valid JMESPath: ")
    assert "\n" not in str(caught.value)


def test_unknown_function_fails_at_compile_time_with_the_nearest_name():
    with pytest.raises(ExpressionError) as caught:
        compile_expression("fromat_date(date, '%Y')")
    assert "fromat_date()" in str(caught.value)
    assert "format_date" in caught.value.hint


def test_wrong_argument_count_fails_at_compile_time():
    with pytest.raises(ExpressionError, match=r"round\(\) with 1 argument; it takes 2"):
        compile_expression("round(total)")
    with pytest.raises(ExpressionError, match=r"takes 2 to 3"):
        compile_expression("substr(a, `1`, `2`, `3`)")


def test_a_bare_word_in_backticks_is_refused_with_the_raw_string_hint():
    with pytest.raises(ExpressionError) as caught:
        compile_expression("source == `OA`")
    assert "not JSON" in str(caught.value)
    assert "'OA'" in caught.value.hint


def test_a_bare_number_in_a_comparison_is_refused_with_the_backtick_hint():
    with pytest.raises(ExpressionError) as caught:
        compile_expression("lines[?amount > 100]")
    assert "`100`" in caught.value.hint


def test_an_empty_expression_is_refused():
    with pytest.raises(ExpressionError, match="empty"):
        compile_expression("")


def test_compiled_expressions_are_cached():
    assert compile_expression("claim_id") is compile_expression("claim_id")


def test_expression_keeps_its_text():
    assert compile_expression("a.b").text == "a.b"


def test_expression_that_reads_only_headers_is_known_as_such():
    assert compile_expression("header('source') == 'oa'").reads_body is False
    assert compile_expression("total > `1`").reads_body is True


def test_expression_error_is_a_value_error_for_the_route_loader():
    assert issubclass(ExpressionError, ValueError)


# -- numbers --------------------------------------------------------------------------------

def test_decimal_literal_is_exact_not_float():
    value = search("`0.10000000000000000001`")
    assert value == Decimal("0.10000000000000000001")


def test_literal_compares_exactly_with_decimal_amounts():
    assert search("amount == `0.1`", {"amount": Decimal("0.10")}) is True
    assert search("amount > `50000`", {"amount": Decimal("50000.01")}) is True
    assert search("lines[?amount >= `0.2`].amount", AMOUNTS) == [Decimal("0.20"), 3]


def test_json_literal_objects_hold_decimal_numbers():
    assert search('`{"rate": 1.5}`') == {"rate": Decimal("1.5")}


def test_sum_of_amounts_is_exact_decimal():
    total = search("sum(lines[].amount)", AMOUNTS)
    assert total == Decimal("3.30") and isinstance(total, Decimal)


def test_sum_of_whole_numbers_stays_an_int():
    assert search("sum(`[1, 2, 3]`)") == 6


def test_sum_that_would_have_to_round_is_an_error():
    data = {"a": [Decimal("1E+40"), Decimal("1E-40")]}
    assert "sum()" in failure("sum(a)", data)


def test_avg_divides_in_decimal():
    assert search("avg(`[1, 2]`)") == Decimal("1.5")
    assert isinstance(search("avg(lines[].amount)", AMOUNTS), Decimal)


@pytest.mark.parametrize("text, expected", [
    ("abs(`-1.50`)", Decimal("1.50")),
    ("max(lines[].amount)", 3),
    ("min(lines[].amount)", Decimal("0.10")),
    ("max_by(lines, &amount).amount", 3),
    ("min_by(lines, &amount).amount", Decimal("0.10")),
    ("sort_by(lines, &amount)[0].amount", Decimal("0.10")),
    ("sort(lines[].amount)", [Decimal("0.10"), Decimal("0.20"), 3]),
    ("ceil(`1.2`)", 2),
    ("floor(`1.8`)", 1),
    ("type(lines[0].amount)", "number"),
])
def test_builtins_take_decimal_as_a_number(text, expected):
    assert search(text, AMOUNTS) == expected


@pytest.mark.parametrize("text, expected", [
    ("'12'", 12), ("'12.50'", Decimal("12.50")), ("' -3 '", -3), ("'1e3'", Decimal("1E+3")),
    ("'abc'", None), ("'NaN'", None), ("'1_000'", None), ("`12.5`", Decimal("12.5")), ("`true`", None),
])
def test_to_number_gives_int_or_decimal_never_float(text, expected):
    value = search(f"to_number({text})")
    assert value == expected and not isinstance(value, float)


def test_to_string_writes_a_decimal_digit_for_digit():
    assert search("to_string(amount)", {"amount": Decimal("1234.50")}) == "1234.50"
    assert search("to_string(@)", {"amount": Decimal("1.50")}) == '{"amount":1.50}'


def test_ordering_text_against_a_number_is_an_error_not_silently_null():
    message = failure("amount > `100`", {"amount": "150.00"})
    assert "decimal(" in message and "`amount > `100``" in message


def test_decimal_reads_text_and_refuses_what_is_not_a_number():
    assert search("decimal('1234.50')") == Decimal("1234.50")
    assert search("decimal(`7`)") == Decimal(7)
    message = failure("decimal(amount)", {"amount": "12,50"})
    assert message.startswith("decimal() needs a number for x, not the text '12,50'")


def test_arithmetic_is_exact():
    assert search("add(`0.1`, `0.2`)") == Decimal("0.3")
    assert search("sub('10.00', `0.01`)") == Decimal("9.99")
    assert search("mul(qty, price)", {"qty": 3, "price": Decimal("19.99")}) == Decimal("59.97")
    assert search("neg(`12.50`)") == Decimal("-12.50")


def test_division_by_zero_is_a_transform_error_naming_div():
    assert "div() cannot divide 1 by zero" in failure("div(`1`, `0`)")


def test_division_keeps_34_digits_for_a_later_round():
    assert search("round(div(`100`, `3`), `2`)") == Decimal("33.33")


def test_arithmetic_on_a_missing_field_says_so_and_suggests_default():
    message = failure("add(amount, fee)", {"amount": Decimal("1")})
    assert "add() needs a number for b, not null" in message
    assert "default(" in message


def test_round_uses_half_up_like_accountants():
    assert search("round(`2.345`, `2`)") == Decimal("2.35")
    assert search("round(`-2.345`, `2`)") == Decimal("-2.35")
    assert search("round(`2.5`, `0`)") == Decimal("3")


def test_round_even_is_bankers_rounding():
    assert search("round_even(`2.345`, `2`)") == Decimal("2.34")
    assert search("round_even(`2.355`, `2`)") == Decimal("2.36")


def test_round_refuses_negative_or_fractional_places():
    assert "round() needs a whole number" in failure("round(`1.5`, `-1`)")
    assert "round() needs a whole number" in failure("round(`1.5`, `1.5`)")


def test_format_decimal_writes_fixed_point_text():
    assert search("format_decimal(`1234.5`, `2`)") == "1234.50"
    assert search("format_decimal(`1E+3`, `0`)") == "1000"
    assert search("format_decimal(`0.125`, `2`)") == "0.13"
    assert search("format_decimal(`-0.001`, `2`)") == "0.00"


@pytest.mark.parametrize("indicator, expected", [
    ("CRDT", Decimal("12.50")), ("C", Decimal("12.50")), ("DBIT", Decimal("-12.50")), ("d", Decimal("-12.50")),
])
def test_signed_turns_credit_debit_indicators_into_signs(indicator, expected):
    assert search("signed(amount, ind)", {"amount": "12.50", "ind": indicator}) == expected


def test_signed_refuses_an_unknown_indicator():
    assert "signed() needs the indicator CRDT, C, DBIT or D" in failure("signed(`1`, 'X')")


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**12, max_value=10**12),
       st.integers(min_value=0, max_value=4))
def test_round_never_produces_float_and_matches_decimal_quantize(value, places):
    from decimal import ROUND_HALF_UP
    result = compile_expression("round(x, p)").search({"x": value, "p": places})
    assert isinstance(result, Decimal)
    assert result == value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


@given(st.lists(st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**9, max_value=10**9)))
def test_sum_equals_exact_decimal_sum(values):
    assert compile_expression("sum(@)").search(values) == sum(values, Decimal(0))


# -- text and dates -------------------------------------------------------------------------

def test_format_date_reads_iso_dates_and_datetimes():
    assert search("format_date(d, '%Y%m%d')", {"d": "2024-03-31"}) == "20240331"
    assert search("format_date(d, '%d.%m.%Y %H:%M')", {"d": "2024-03-31T09:30:00+02:00"}) == "31.03.2024 09:30"


def test_format_date_reads_other_formats_when_given_one():
    assert search("format_date(d, '%Y-%m-%d', '%d.%m.%Y')", {"d": "31.03.2024"}) == "2024-03-31"
    assert search("format_date(d, '%Y-%m-%d', '%y%m%d')", {"d": "240331"}) == "2024-03-31"


def test_bad_date_is_a_transform_error_naming_format_date():
    message = failure("format_date(d, '%Y')", {"d": "2024-13-45"})
    assert message.startswith("format_date() cannot read '2024-13-45' as an ISO date")
    assert "(in `format_date(d, '%Y')`)" in message
    assert "with the format '%d.%m.%Y'" in failure("format_date(d, '%Y', '%d.%m.%Y')", {"d": "2024-03-31"})


def test_concat_joins_text_and_writes_numbers_exactly():
    assert search("concat('EXP-', id, '/', amount)", {"id": 42, "amount": Decimal("10.50")}) == "EXP-42/10.50"


def test_concat_refuses_null():
    assert "concat() needs text for argument 2, not null" in failure("concat('a', missing)", {})


def test_text_functions():
    data = {"s": "Acme Ltd", "acct": "1234"}
    assert search("upper(s)", data) == "ACME LTD"
    assert search("lower(s)", data) == "acme ltd"
    assert search("pad_left(acct, `8`, '0')", data) == "00001234"
    assert search("pad_left(acct, `2`, '0')", data) == "1234"
    assert search("substr(s, `0`, `4`)", data) == "Acme"
    assert search("substr(s, `5`)", data) == "Ltd"
    assert search("substr(s, `20`, `3`)", data) == ""


def test_pad_left_needs_exactly_one_character():
    assert "pad_left() needs one character" in failure("pad_left('1', `3`, '00')")


def test_default_fills_null_and_empty_text_only():
    assert search("default(a, 'n/a')", {}) == "n/a"
    assert search("default(a, 'n/a')", {"a": ""}) == "n/a"
    assert search("default(a, `0`)", {"a": 0}) == 0
    assert search("default(a, 'n/a')", {"a": False}) is False


def test_header_reads_the_headers_given_to_search():
    assert search("header('source')", {}, {"source": "oa"}) == "oa"
    assert search("header('missing')", {}, {"source": "oa"}) is None
    assert search("header('source')", {}) is None


def test_a_builtin_type_error_becomes_a_transform_error_naming_the_function():
    assert failure("length(`1`)").startswith("length() cannot take the number 1")


def test_no_jmespath_exception_escapes_search():
    with pytest.raises(TransformError):
        search("sum(names)", {"names": ["a"]})


def test_results_never_hold_a_float():
    data = {"lines": [{"amount": Decimal("1.10")}, {"amount": 2}]}
    for text in ("avg(lines[].amount)", "`[0.1, {\"x\": 2.5}]`", "to_number('2.5')", "div(`1`, `3`)",
                 "lines[].{a: amount, b: mul(amount, `1.5`)}"):
        assert no_float(search(text, data)), text


def test_every_added_function_is_documented():
    added = {name for name in expressions._Functions.FUNCTION_TABLE
             if f"_func_{name}" in vars(expressions._Functions)} - {"abs", "sum", "avg", "contains", "to_number",
                                                                     "to_string", "type"}
    assert added == set(FUNCTION_HELP)
    for name in FUNCTION_HELP:
        assert re.search(rf"\b{name}\(", expressions.__doc__), name


# -- truth and messages ---------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, False), (False, False), ("", False), ([], False), ({}, False),
    (0, True), (Decimal("0"), True), ("x", True), ([0], True), (True, True),
])
def test_truth_follows_jmespath_where_zero_is_true(value, expected):
    assert is_true(value) is expected


def test_a_header_only_expression_works_on_an_xml_body():
    message = Message("<a/>", content_type=XML, headers={"source": "oa"})
    assert search_message(compile_expression("header('source')"), message, "filter") == "oa"


def test_a_body_expression_on_an_xml_body_asks_for_xml_to_json():
    message = Message("<a/>", content_type=XML)
    with pytest.raises(TransformError, match="add xml_to_json before it"):
        search_message(compile_expression("total"), message, "filter")


@pytest.mark.parametrize("text", ["decimal(a)", "to_number(a)", "add(a, `1`)", "format_decimal(a, `2`)"])
def test_text_holding_a_number_too_long_to_write_out_is_refused(text):
    message = failure(text, {"a": "1e99999999"})
    assert "cannot take the text '1e99999999': written out in full it would be 100,000,000 characters, " \
           "over the limit of 1,000" in message


def test_arithmetic_cannot_grow_a_number_past_the_limit():
    assert search("mul(a, a)", {"a": Decimal("1e499")}) == Decimal("1E+998")
    assert "mul() gives a number too large to hold (over 1,000 digits written out)" in \
        failure("mul(a, a)", {"a": Decimal("1e600")})


# -- conversions that must not change what a value says -----------------------------------------

RATE = {"amount": 500, "rate": Decimal("0.5")}


def test_a_quotient_becomes_text_and_json_in_fixed_point_not_with_an_exponent():
    assert search("div(amount, rate)", RATE) == Decimal("1.00E+3")  # the value itself is exact
    assert search("concat('EUR ', div(amount, rate))", RATE) == "EUR 1000"
    assert search("to_string(div(amount, rate))", RATE) == "1000"
    assert jsoncodec.dumps(search("{total: div(amount, rate)}", RATE)) == '{"total":1000}'
    assert search("format_decimal(div(amount, rate), `2`)", RATE) == "1000.00"


def test_a_body_number_with_an_exponent_reads_as_plain_text():
    body = jsoncodec.loads('{"n": 1e2, "small": 2.5E-7}')
    assert search("to_string(n)", body) == "100"
    assert search("concat(n, '/', small)", body) == "100/0.00000025"
    assert search("pad_left(n, `6`, '0')", body) == "000100"


@pytest.mark.parametrize("text", ["'１２.5'", "'١٢٣'", "'12.٥'", "'１e3'"])
def test_text_with_non_ascii_digits_is_not_a_number(text):
    assert search(f"to_number({text})") is None  # as for any text that is not a number
    assert "only ASCII digits are numbers: write ascii_digits(field)" in failure(f"decimal({text})")
    assert "needs a number for a" in failure(f"add({text}, `1`)")


def test_ascii_digits_turns_unicode_digits_into_a_number_when_the_author_asks():
    assert search("ascii_digits(a)", {"a": "１２．５０"}) == "12.50"
    assert search("decimal(ascii_digits(a))", {"a": "－１２．５０"}) == Decimal("-12.50")
    assert search("to_number(ascii_digits(a))", {"a": "١٢٣"}) == 123
    assert search("ascii_digits(a)", {"a": "No.１２ 付款"}) == "No.12 付款"  # other text is kept
    assert search("ascii_digits(a)", {"a": Decimal("1E+2")}) == "100"


@pytest.mark.parametrize("text", [
    "`[1]` == `[true]`", "`[0]` == `[false]`", "`{\"a\": 1}` == `{\"a\": true}`", "`[[1.0]]` == `[[true]]`",
    "contains(`[true]`, `1`)", "contains(`[false]`, `0`)", "contains(`[1]`, `true`)", "`[true]` != `[1]`",
])
def test_a_boolean_never_equals_a_number_inside_arrays_and_objects(text):
    assert search(text) is (text.endswith("!= `[1]`"))


@pytest.mark.parametrize("text", ["`[1]` == `[1.00]`", "`{\"a\": [true, 2]}` == `{\"a\": [true, 2.0]}`",
                                  "contains(`[0.10, 2]`, `0.1`)", "contains('abc', 'b')", "`true` == `true`"])
def test_equal_numbers_and_booleans_still_match(text):
    assert search(text) is True


def test_text_compares_as_text_and_the_number_idiom_compares_amounts():
    body = {"a": [{"v": "99.00"}, {"v": "150"}]}
    assert search("a[?v > '100'].v", body) == ["99.00", "150"]  # as text: '9' > '1'
    assert search("a[?to_number(v) > `100`].v", body) == ["150"]
    assert search("a[?decimal(v) > `100`].v", body) == ["150"]


@pytest.mark.parametrize("text, found", [
    ("a[?v > '100']", ["100"]), ("'1e3' <= b.c", ["1e3"]), ("to_number(v) > '5'", ["5"]),
    ("x >= ' 12.50 '", [" 12.50 "]),
    ("a[?v > `100`]", []), ("a[?v > 'abc']", []), ("v == '100'", []), ("'100' > '99'", []),
    ("a[?v > '１２']", []),
])
def test_text_comparisons_finds_a_path_ordered_against_numeric_text(text, found):
    assert expressions.text_comparisons(compile_expression(text)) == found
