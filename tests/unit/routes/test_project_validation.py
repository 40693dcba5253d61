"""`esb routes validate` semantics: every kind of mistake is reported as path:line:col with a fix."""

import textwrap

import pytest

from esb.errors import ConfigErrors
from esb.loading.project import load_project

LEDGER = """\
name: ledger-rest
kind: rest
base_url: http://127.0.0.1:8081
auth: {bearer: {token: "${LEDGER_TOKEN:-t}"}}
operations:
  create_voucher: {method: POST, path: /vouchers}
  cancel_voucher: {method: DELETE, path: "/vouchers/{voucher_no}"}
"""

ROUTE = """\
name: expense
source: {exchange: oa.events, binding_key: expense.approved}
concurrency: 4
steps:
  - label: create-voucher
    to: {adapter: ledger-rest, operation: create_voucher}
"""


def project(tmp_path, route=ROUTE, extra=None):
    files = {"adapters/ledger-rest.yaml": LEDGER, "routes/expense.yaml": route, **(extra or {})}
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def problems(root, env=None) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_project(root, env or {})
    return [str(e) for e in caught.value.errors]


def test_a_clean_project_loads_with_its_routes_and_adapters(tmp_path):
    loaded = load_project(project(tmp_path), {})
    assert list(loaded.routes) == ["expense"]
    assert loaded.routes["expense"].steps[0].label == "create-voucher"
    assert loaded.routes["expense"].source.queue == "expense"


def test_unknown_key_names_the_line_and_the_nearest_valid_key(tmp_path):
    found = problems(project(tmp_path, ROUTE.replace("concurrency: 4", "concurency: 4")))
    assert found == ["routes/expense.yaml:3:1: unknown key 'concurency' — Did you mean 'concurrency'?"]


def test_wrong_type_says_what_was_expected(tmp_path):
    found = problems(project(tmp_path, ROUTE.replace("concurrency: 4", "concurrency: many")))
    assert found[0].startswith("routes/expense.yaml:3:14: 'concurrency' must be a whole number, not 'many'")


def test_missing_required_field_is_named(tmp_path):
    found = problems(project(tmp_path, ROUTE.replace("source: {exchange: oa.events, binding_key: expense.approved}\n",
                                                     "")))
    assert len(found) == 1
    assert found[0].startswith("routes/expense.yaml:1:1: 'the file' is missing the required field 'source'")


def test_unknown_step_kind_suggests_the_nearest_kind(tmp_path):
    route = ROUTE + "  - valdate: {json_schema: x.json}\n"
    assert problems(project(tmp_path, route)) == [
        "routes/expense.yaml:7:5: unknown step kind 'valdate' — Did you mean 'validate'?"]


def test_unknown_adapter_is_reported_at_its_line(tmp_path):
    route = ROUTE.replace("adapter: ledger-rest", "adapter: ledger-rst")
    assert problems(project(tmp_path, route)) == [
        "routes/expense.yaml:6:19: no adapter is named 'ledger-rst' — Did you mean 'ledger-rest'?"]


def test_unknown_operation_and_compensation_are_reported(tmp_path):
    route = ROUTE.replace("operation: create_voucher}",
                          "operation: create_vouchr, compensate: {operation: cancel}}")
    found = problems(project(tmp_path, route))
    assert "the adapter 'ledger-rest' has no operation 'create_vouchr' — Did you mean 'create_voucher'?" in found[0]
    assert "the adapter 'ledger-rest' has no operation 'cancel' — Did you mean 'cancel_voucher'?" in found[1]


def test_missing_schema_file_is_reported_with_its_line(tmp_path):
    route = ROUTE + "  - validate: {json_schema: transformers/schemas/nope.json}\n"
    found = problems(project(tmp_path, route))
    assert len(found) == 1 and found[0].startswith("routes/expense.yaml:7:")
    assert "the file 'transformers/schemas/nope.json' does not exist" in found[0]


def test_missing_wsdl_is_reported_in_the_adapter_file(tmp_path):
    soap = "name: oa-soap\nkind: soap\nwsdl: adapters/wsdl/missing.wsdl\noperations: {archive: {operation: A}}\n"
    found = problems(project(tmp_path, extra={"adapters/oa-soap.yaml": soap}))
    assert found == ["adapters/oa-soap.yaml:3:7: the file 'adapters/wsdl/missing.wsdl' does not exist "
                     "— check the path (relative to the project root)"]


def test_unset_variable_is_reported_with_how_to_set_it(tmp_path):
    ledger = LEDGER.replace("${LEDGER_TOKEN:-t}", "${LEDGER_TOKEN}")
    found = problems(project(tmp_path, extra={"adapters/ledger-rest.yaml": ledger}))
    assert found == ["adapters/ledger-rest.yaml:4:24: the variable ${LEDGER_TOKEN} is not set "
                     "— export LEDGER_TOKEN=... before starting esb (the demo's: esb --env-file config/demo.env)"]
    assert load_project(tmp_path, {"LEDGER_TOKEN": "x"}).adapters["ledger-rest"].settings["auth"]["bearer"]


def test_two_routes_with_one_name_are_refused(tmp_path):
    found = problems(project(tmp_path, extra={"routes/copy.yaml": ROUTE.replace(
        "binding_key: expense.approved", "binding_key: other")}))
    assert found == ["routes/expense.yaml:1:7: the name 'expense' is also used by routes/copy.yaml "
                     "— give each file its own name"]


def test_two_routes_on_one_queue_are_refused(tmp_path):
    other = ROUTE.replace("name: expense", "name: expense-2").replace(
        "binding_key: expense.approved}", "binding_key: expense.approved, queue: expense}")
    found = problems(project(tmp_path, extra={"routes/expense-2.yaml": other}))
    assert len(found) == 1 and "the queue 'expense' is consumed by routes expense-2, expense" in found[0]


def test_yaml_syntax_error_is_a_sentence_not_a_parser_dump(tmp_path):
    found = problems(project(tmp_path, ROUTE.replace("concurrency: 4", "concurrency: 4: 5")))
    assert found == ["routes/expense.yaml:3:15: a ':' stands where YAML does not expect a key: "
                     "`concurrency: 4: 5` — quote the value if it contains ': ', or fix the indentation"]


@pytest.mark.parametrize("value, reads_as", [
    ("NO", "boolean false"), ("017", "the number 15"), ("2024-01-02", "a date"), ("on", "boolean true")])
def test_yaml_1_1_traps_in_text_fields_are_refused_with_a_quoting_hint(tmp_path, value, reads_as):
    found = problems(project(tmp_path, ROUTE.replace("binding_key: expense.approved", f"binding_key: {value}")))
    assert found == [f"routes/expense.yaml:2:44: the unquoted value {value} reads as {reads_as} in YAML "
                     f"— quote it if text is meant: '{value}'"]


def test_quoted_trap_values_are_plain_text(tmp_path):
    loaded = load_project(project(tmp_path, ROUTE.replace("binding_key: expense.approved", "binding_key: '017'")), {})
    assert loaded.routes["expense"].source.binding_key == "017"


def test_python_tags_are_refused_and_never_constructed(tmp_path):
    route = ROUTE.replace("concurrency: 4", "concurrency: !!python/object/apply:os.system ['touch pwned']")
    found = problems(project(tmp_path, route))
    assert found[0] == ("routes/expense.yaml:3:14: the tag !!python/object/apply:os.system is not allowed "
                        "— asset files hold plain data only: remove the tag")
    assert not (tmp_path / "pwned").exists()


def test_every_problem_in_every_file_is_reported_in_one_pass(tmp_path):
    broken = ROUTE.replace("concurrency: 4", "concurency: 4").replace("ledger-rest", "ledgr")
    found = problems(project(tmp_path, broken, {"routes/other.yaml": "name: [unclosed\n"}))
    assert len(found) == 3
    assert [f.split(":")[0] for f in found] == ["routes/expense.yaml", "routes/expense.yaml", "routes/other.yaml"]


def test_duplicate_step_labels_are_refused(tmp_path):
    route = ROUTE + "  - label: create-voucher\n    publish: {exchange: x, routing_key: y}\n"
    found = problems(project(tmp_path, route))
    assert found == ["routes/expense.yaml:7:12: the label 'create-voucher' is already used by another step "
                     "of this route — give each step its own label"]


def test_a_step_with_two_kinds_is_refused(tmp_path):
    route = ROUTE + "  - publish: {exchange: x, routing_key: y}\n    log: hi\n"
    found = problems(project(tmp_path, route))
    assert len(found) == 1 and "a step needs exactly one kind (found: publish, log)" in found[0]


def test_config_file_is_validated_too(tmp_path):
    found = problems(project(tmp_path, extra={"config/esb.yaml": "broker: {uri: memory://}\n"}))
    assert found == ["config/esb.yaml:1:10: unknown key 'uri' — Did you mean 'url'?"]
