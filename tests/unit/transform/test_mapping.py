"""Mapping specs: a YAML tree of JMESPath expressions, checked at load time with file:line errors."""

import copy
from decimal import Decimal

import pytest

from esb.errors import ConfigErrors, TransformError
from esb.transform.mapping import compile_mapping, load_mapping

CLAIM = {
    "claim_id": "C-17",
    "employee": {"name": "Ada", "cost_center": "4711"},
    "approved_on": "2024-03-31",
    "items": [{"account": "6800", "amount": Decimal("120.50")}, {"account": "6810", "amount": Decimal("79.50")}],
}

VOUCHER_YAML = """\
description: Approved expense claims as ledger vouchers.
output:
  voucher_no: "concat('EXP-', claim_id)"
  source: "'OA'"
  version: 2
  posted: true
  memo: null
  date: "format_date(approved_on, '%Y%m%d')"
  total: "sum(items[].amount)"
  fee: "`0.00`"
  party:
    name: upper(employee.name)
    cost_center: employee.cost_center
  lines: "items[].{account: account, amount: amount}"
  tags: ["'expense'", claim_id]
"""


def write(tmp_path, text, name="transformers/voucher.yaml"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_output_tree_builds_the_new_body(tmp_path):
    spec = load_mapping(write(tmp_path, VOUCHER_YAML), "transformers/voucher.yaml")
    assert spec.apply(CLAIM) == {
        "voucher_no": "EXP-C-17", "source": "OA", "version": 2, "posted": True, "memo": None,
        "date": "20240331", "total": Decimal("200.00"), "fee": Decimal("0.00"),
        "party": {"name": "ADA", "cost_center": "4711"},
        "lines": [{"account": "6800", "amount": Decimal("120.50")}, {"account": "6810", "amount": Decimal("79.50")}],
        "tags": ["expense", "C-17"],
    }
    assert spec.description == "Approved expense claims as ledger vouchers."


def test_output_keeps_the_order_of_the_spec(tmp_path):
    spec = load_mapping(write(tmp_path, VOUCHER_YAML), "transformers/voucher.yaml")
    assert list(spec.apply(CLAIM))[:3] == ["voucher_no", "source", "version"]


def test_applying_a_mapping_never_changes_the_input_body(tmp_path):
    spec = load_mapping(write(tmp_path, VOUCHER_YAML), "transformers/voucher.yaml")
    before = copy.deepcopy(CLAIM)
    spec.apply(CLAIM)
    assert CLAIM == before


def test_one_expression_can_build_the_whole_body():
    spec = compile_mapping({"expression": "{id: claim_id, total: sum(items[].amount)}"}, "inline")
    assert spec.apply(CLAIM) == {"id": "C-17", "total": Decimal("200.00")}


def test_a_missing_field_maps_to_null():
    assert compile_mapping({"output": {"x": "nowhere"}}, "inline").apply(CLAIM) == {"x": None}


def test_headers_are_read_with_header():
    spec = compile_mapping({"output": {"source": "header('source')"}}, "inline")
    assert spec.apply({}, {"source": "oa"}) == {"source": "oa"}


def test_yaml_decimal_constants_stay_decimal():
    spec = compile_mapping({"output": {"rate": Decimal("0.19")}}, "inline")
    assert spec.apply({}) == {"rate": Decimal("0.19")}


def test_every_bad_expression_is_reported_at_its_line(tmp_path):
    text = "output:\n  a: claim_id\n  b: \"total >\"\n  c:\n    d: \"fromat_date(x, '%Y')\"\n"
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(write(tmp_path, text), "transformers/bad.yaml")
    errors = caught.value.errors
    assert [(e.path, e.line) for e in errors] == [("transformers/bad.yaml", 3), ("transformers/bad.yaml", 5)]
    assert "`total >` is not valid JMESPath" in errors[0].message
    assert "format_date" in errors[1].hint


def test_a_bare_word_constant_gets_the_raw_string_hint(tmp_path):
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(write(tmp_path, "output:\n  source: '`OA`'\n"), "m.yaml")
    assert "'OA'" in caught.value.errors[0].hint


def test_output_and_expression_together_are_refused(tmp_path):
    with pytest.raises(ConfigErrors, match="either `output`"):
        load_mapping(write(tmp_path, "output: {a: b}\nexpression: a\n"), "m.yaml")


def test_neither_output_nor_expression_is_refused():
    with pytest.raises(ConfigErrors, match="either `output`"):
        compile_mapping({"description": "nothing"}, "inline")


def test_an_unknown_top_level_key_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(write(tmp_path, "outputs: {a: b}\n"), "m.yaml")
    error = next(e for e in caught.value.errors if "outputs" in e.message)
    assert error.line == 1 and "'output'" in error.hint


def test_schema_problems_and_bad_expressions_are_reported_together(tmp_path):
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(write(tmp_path, "output:\n  a: \"total >\"\nnotes: x\n"), "m.yaml")
    assert [e.line for e in caught.value.errors] == [2, 3]


def test_yaml_syntax_errors_carry_file_line_and_column(tmp_path):
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(write(tmp_path, "output:\n  a: b\n   c: d\n"), "transformers/m.yaml")
    error = caught.value.errors[0]
    assert error.path == "transformers/m.yaml" and error.line == 3 and error.col is not None


def test_inline_spec_without_a_file_reports_by_name():
    with pytest.raises(ConfigErrors) as caught:
        compile_mapping({"output": {"a": "total >"}}, "step map-1")
    assert caught.value.errors[0].path == "step map-1"
    assert caught.value.errors[0].line is None


def test_a_failing_expression_names_the_mapping_and_the_field():
    spec = compile_mapping({"output": {"party": {"date": "format_date(d, '%Y')"}}}, "transformers/m.yaml")
    with pytest.raises(TransformError) as caught:
        spec.apply({"d": "31/03/2024"})
    message = caught.value.message
    assert message.startswith("the mapping transformers/m.yaml failed: the field party.date: format_date()")


def test_list_items_are_named_by_index_in_errors():
    spec = compile_mapping({"output": {"lines": ["a", "add(x, `1`)"]}}, "m")
    with pytest.raises(TransformError, match=r"the field lines\[1\]: add\(\)"):
        spec.apply({"x": "not a number"})
