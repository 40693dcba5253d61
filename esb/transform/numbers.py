"""Numbers as text: which text is a number, and a Decimal written out in full within a bound.

A 17-byte body `{"a": 1e99999999}` is a valid JSON number whose fixed-point text (what xs:decimal
and most ledgers need) is 100 MB. Every place that writes a Decimal digit for digit asks this
module first, so a number amplifies into at most MAX_NUMBER_CHARS characters.

Only ASCII digits make a number. Python's Decimal() and int() also read fullwidth (１２) and
Arabic-Indic (١٢) digits; a mapping author who wants those read as numbers says so with
ascii_digits() (the JMESPath function of the same name).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from esb.errors import TransformError

# ISO 20022 amounts have at most 18 digits (totalDigits 18), a ledger's NUMERIC at most 38-1000
# (PostgreSQL). A thousand characters holds any real amount or rate written out in full, and
# writing one costs microseconds: a million would already let a 17-byte body become 1 MB.
MAX_NUMBER_CHARS = 1_000

# What decimal(), to_number() and arithmetic accept as text: ASCII only (`\d` would take any
# Unicode digit), an optional sign, an exponent; surrounding blanks are stripped by the caller.
NUMBER_TEXT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
_FULLWIDTH_SIGNS = {"\uff0e": ".", "\uff0b": "+", "\uff0d": "-"}  # ． ＋ －


def fixed_point_chars(value: Decimal) -> int:
    """How many characters format(value, "f") writes for a finite Decimal, without writing them."""
    # From the exponent and the digit count; as_tuple costs what the digits already cost.
    sign, digits, exponent = value.as_tuple()
    if exponent >= 0:
        length = 1 if digits == (0,) else len(digits) + exponent
    elif len(digits) > -exponent:
        length = len(digits) + 1  # the point sits among the digits: "12.5"
    else:
        length = 2 - exponent  # "0." then zeros then the digits: "0.0125"
    return length + sign


def too_long(value: Decimal, where: str, limit: int = MAX_NUMBER_CHARS) -> str | None:
    """Why a finite Decimal is refused, or None when its fixed-point text fits in `limit`."""
    size = fixed_point_chars(value)
    if size <= limit:
        return None
    return (f"the number at {where} would be {size:,} characters long written out in full, over "
            f"the limit of {limit:,}; no amount needs that many digits")


def fixed_point(value: Decimal, where: str, limit: int = MAX_NUMBER_CHARS) -> str:
    """format(value, "f") for a finite Decimal; refused, naming `where`, when it would be too long."""
    # str() writes the same text where it writes no exponent (an exponent <= 0, adjusted >= -6: an
    # amount's case), 4x faster than format() and without the digit tuple that measuring builds.
    text = str(value)
    if "E" not in text and len(text) <= limit and value.is_finite():
        return text
    reason = too_long(value, where, limit)
    if reason is not None:
        raise TransformError(reason)
    return format(value, "f")


def plain(value: Decimal, where: str) -> str:
    """A Decimal as text without an exponent (1.00E+3 -> "1000", 1E-7 -> "0.0000001"), bounded."""
    return fixed_point(value, where) if value.is_finite() else str(value)


def ascii_digits(text: str) -> str:
    """Every Unicode decimal digit as its ASCII digit, and fullwidth ． ＋ － as . + -; the rest kept."""
    if text.isascii():
        return text
    return "".join(_ascii(ch) for ch in text)


def _ascii(ch: str) -> str:
    digit = unicodedata.decimal(ch, None)
    return str(digit) if digit is not None else _FULLWIDTH_SIGNS.get(ch, ch)
