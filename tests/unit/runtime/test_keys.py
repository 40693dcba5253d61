"""Idempotency keys are typed (a string never collides with an integer); effect keys carry generations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from esb.errors import PermanentError
from esb.runtime.keys import MAX_KEY, effect_key, store_key


def test_the_string_1_and_the_integer_1_are_two_keys():
    assert store_key("1", "key claim_id") != store_key(1, "key claim_id")


def test_true_and_the_string_true_never_meet_as_keys():
    assert store_key("True", "key ref") == "s:True"
    with pytest.raises(PermanentError):
        store_key(True, "key ref")


@pytest.mark.parametrize("value, kind", [
    (True, "a boolean"), ([], "a list"), ({"a": 1}, "an object"), (Decimal("1.5"), "a Decimal"), (1.5, "a float")])
def test_a_key_that_is_not_a_string_or_integer_is_a_permanent_error_naming_the_field(value, kind):
    with pytest.raises(PermanentError, match=f"the idempotency key claim_id is {kind}") as caught:
        store_key(value, "key claim_id")
    assert caught.value.step == "idempotency"


def test_an_empty_key_is_a_permanent_error():
    with pytest.raises(PermanentError, match="header X-Claim is empty"):
        store_key("", "header X-Claim")


def test_a_key_longer_than_the_limit_is_a_permanent_error():
    with pytest.raises(PermanentError, match=f"longer than {MAX_KEY}"):
        store_key("x" * (MAX_KEY + 1), "key claim_id")


def test_an_effect_of_the_first_generation_has_no_suffix():
    assert effect_key("m-1", "create-voucher") == effect_key("m-1", "create-voucher", 1) == "m-1:create-voucher"


def test_an_effect_of_a_later_generation_has_a_new_key():
    assert effect_key("m-1", "create-voucher", 2) == "m-1:create-voucher:g2"
    assert effect_key("m-1", "create-voucher", 3) == "m-1:create-voucher:g3"


def test_a_key_of_exactly_the_limit_is_accepted():
    assert store_key("x" * MAX_KEY, "key claim_id") == "s:" + "x" * MAX_KEY
    assert store_key(10 ** (MAX_KEY - 1), "key claim_id").startswith("i:1")
