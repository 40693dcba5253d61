"""Every place a Decimal becomes text writes it in fixed point: 1000, never 1.00E+3 or 1E+3."""

from __future__ import annotations

from decimal import Decimal

import pytest

from esb.adapters import rest, sftp
from esb.runtime.envelope import wire_headers
from esb.steps import log, xslt

QUOTIENT = Decimal("1.00E+3")  # what div(`500`, `0.5`) gives


@pytest.mark.parametrize("write", [
    lambda d: wire_headers({"x-total": d})["x-total"],  # set_headers -> AMQP headers
    lambda d: log._printable(d),  # a log field
    lambda d: xslt._text(d),  # an XSLT parameter
    lambda d: rest._scalar("total", d),  # a REST path or query parameter
    lambda d: sftp._name_part("total", d),  # part of a remote file name
])
def test_a_decimal_written_as_text_anywhere_has_no_exponent(write):
    assert write(QUOTIENT) == "1000"
    assert write(Decimal("1E-7")) == "0.0000001"
    assert write(Decimal("12.50")) == "12.50"
