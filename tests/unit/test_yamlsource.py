"""The asset YAML reader: plain data, positions, Decimal numbers, refusals."""

from decimal import Decimal

import pytest

from esb.errors import ConfigErrors
from esb.loading.yamlsource import parse_yaml


def test_floats_become_exact_decimals():
    assert parse_yaml("amount: 0.10\n", "f.yaml").data == {"amount": Decimal("0.10")}


def test_positions_of_keys_and_values_are_remembered():
    located = parse_yaml("a:\n  b: [1, 2]\n", "f.yaml")
    assert located.where(("a", "b", 1)) == (2, 10)
    assert located.where(("a", "b"), key=True) == (2, 3)
    assert located.where(("a", "missing")) == (2, 3)


def test_duplicate_keys_are_refused():
    with pytest.raises(ConfigErrors, match="f.yaml:2:1: the key 'a' appears twice"):
        parse_yaml("a: 1\na: 2\n", "f.yaml")


def test_an_alias_bomb_is_refused_quickly():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    with pytest.raises(ConfigErrors, match="expands to more than"):
        parse_yaml(bomb, "f.yaml")


def test_true_and_false_stay_booleans_and_plain_integers_stay_integers():
    assert parse_yaml("a: true\nb: 12\nc: -3\nd: 0\n", "f.yaml").data == {"a": True, "b": 12, "c": -3, "d": 0}
