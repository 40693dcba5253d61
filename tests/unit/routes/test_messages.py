"""Validation messages point at the cause, once, with the line shown (issue 9 point 8)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from esb.cli.main import esb
from esb.errors import ConfigErrors
from esb.loading.project import load_project
from esb.loading.yamlsource import parse_yaml

ADAPTER = """\
name: ledger-rest
kind: rest
base_url: https://ledger.example.com/api
headers:
  Accept: application/json
operations:
  create_voucher: {method: POST, path: /vouchers}
"""

ROUTE = """\
name: NAME
source: {exchange: oa.events, binding_key: NAME}
steps:
  - label: create-voucher
    to:
      adapter: ledger-rest
      operation: create_voucher
  - label: posted
    log:
      message: voucher posted
      level: info
      fields: {claim: claim_id}
"""

TESTS = """\
route: NAME
cases:
  - name: a claim is posted
    input: {body: {claim_id: "C-1"}}
    mocks: {create-voucher: {body: {voucher_id: "V-1"}}}
    expect: {body: {voucher_id: "V-1"}}
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def route(name: str) -> str:
    return ROUTE.replace("NAME", name)


def problems(root: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_project(root, {})
    return [str(e) for e in caught.value.errors]


def cli(root: Path, *args: str):
    return CliRunner().invoke(esb, ["--root", str(root), *args], env={"COLUMNS": "200"})


def test_fields_dedented_out_of_log_says_to_indent_it(tmp_path):
    text = route("a").replace("      fields: {claim", "    fields: {claim")
    root = write(tmp_path, {"adapters/ledger-rest.yaml": ADAPTER, "routes/a.yaml": text})
    assert problems(root) == ["routes/a.yaml:12:5: 'fields' is a setting of the `log` step above it, written "
                              "beside `log:` — indent `fields:` under `log:`"]


def test_an_operation_dedented_is_reported_at_its_own_line_with_the_line_shown(tmp_path):
    text = route("a").replace("      operation: create_voucher", "    operation: create_voucher")
    text = text.replace("  - label: posted", "      into: receipt\n  - label: posted")
    root = write(tmp_path, {"adapters/ledger-rest.yaml": ADAPTER, "routes/a.yaml": text})
    assert problems(root) == ["routes/a.yaml:7:5: this line is indented less than the lines around it: "
                              "`operation: create_voucher` — indent it like line 6 (YAML cannot read line 8 after it)"]


def test_a_yaml_syntax_error_shows_the_line_it_stands_on():
    with pytest.raises(ConfigErrors) as caught:
        parse_yaml("name: a\ndescription: costs: high\n", "routes/a.yaml")
    assert [str(e) for e in caught.value.errors] == [
        "routes/a.yaml:2:19: a ':' stands where YAML does not expect a key: `description: costs: high` — quote the "
        "value if it contains ': ', or fix the indentation"]


def test_a_number_trap_in_an_adapter_header_is_one_error_not_one_per_route(tmp_path):
    adapter = ADAPTER.replace("Accept: application/json", "Accept: application/json\n  X-Branch: 017")
    root = write(tmp_path, {"adapters/ledger-rest.yaml": adapter, "routes/a.yaml": route("a"),
                            "routes/b.yaml": route("b"), "routes/c.yaml": route("c")})
    assert problems(root) == ["adapters/ledger-rest.yaml:6:13: the unquoted value 017 reads as the number 15 in YAML "
                              "— quote it if text is meant: '017'"]


def test_a_broken_json_schema_is_reported_once_at_the_schema(tmp_path):
    text = route("a").replace("steps:\n", "steps:\n  - validate: {json_schema: transformers/schemas/s.json}\n")
    root = write(tmp_path, {"adapters/ledger-rest.yaml": ADAPTER, "routes/a.yaml": text,
                            "transformers/schemas/s.json": '{"type": "objekt"}'})
    [found] = problems(root)
    assert found.startswith("transformers/schemas/s.json: the JSON Schema is invalid at type")


def test_a_broken_mapping_file_is_reported_once(tmp_path):
    text = route("a").replace("steps:\n", "steps:\n  - map: transformers/mappings/m.yaml\n")
    root = write(tmp_path, {"adapters/ledger-rest.yaml": ADAPTER, "routes/a.yaml": text,
                            "transformers/mappings/m.yaml": "claim: claim_id\nbroken: [\n"})
    [found] = problems(root)
    assert found.startswith("transformers/mappings/m.yaml:")


def test_validate_checks_the_route_test_files(tmp_path):
    tests = TESTS.replace("NAME", "a").replace('{claim_id: "C-1"}', "{account: 017}")
    root = write(tmp_path, {"adapters/ledger-rest.yaml": ADAPTER, "routes/a.yaml": route("a"),
                            "routes/tests/a.yaml": tests})
    result = cli(root, "routes", "validate")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "routes/tests/a.yaml:4:29: the unquoted value 017 reads as the number 15 in YAML — quote it if text is "
        "meant: '017'", "1 problem"]


def test_one_broken_test_file_fails_only_its_own_cases(tmp_path):
    broken = TESTS.replace("NAME", "a").replace('{claim_id: "C-1"}', "{account: 017}")
    root = write(tmp_path, {"adapters/ledger-rest.yaml": ADAPTER, "routes/a.yaml": route("a"),
                            "routes/b.yaml": route("b"), "routes/tests/a.yaml": broken,
                            "routes/tests/b.yaml": TESTS.replace("NAME", "b")})
    result = cli(root, "routes", "test")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL a :: (the test file does not load) — routes/tests/a.yaml:4:29: the unquoted "
                               "value 017")
    assert lines[1:] == ["PASS b :: a claim is posted", "1 passed, 1 failed"]


def test_yaml_nested_20000_deep_is_a_clear_error_not_a_recursion_error(tmp_path):
    root = write(tmp_path, {"routes/deep.yaml": "name: " + "[" * 20_000 + "]" * 20_000 + "\n"})
    assert problems(root) == ["routes/deep.yaml:1:106: the YAML is nested more than 100 levels deep — flatten it: "
                              "asset files are a few levels deep"]


def test_block_yaml_nested_too_deep_is_the_same_clear_error():
    text = "".join("  " * i + f"k{i}:\n" for i in range(150)) + "  " * 150 + "v: 1\n"
    with pytest.raises(ConfigErrors) as caught:
        parse_yaml(text, "routes/deep.yaml")
    assert [e.message for e in caught.value.errors] == ["the YAML is nested more than 100 levels deep"]
