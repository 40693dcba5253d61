"""`esb routes ...` against small projects written into tmp_path."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from esb import __version__
from esb.cli.main import esb
from esb.steps import STEP_KINDS

ENV = {"LEDGER_TOKEN": "s3cr3t", "COLUMNS": "200"}

ADAPTER = """\
name: ledger-rest
kind: rest
base_url: https://ledger.example.com/api
auth: {bearer: {token: "${LEDGER_TOKEN}"}}
operations:
  create_voucher: {method: POST, path: /vouchers}
  cancel_voucher: {method: DELETE, path: "/vouchers/{voucher_id}"}
"""

ROUTE = """\
name: oa-expense-to-voucher
description: Approved expense claims from OA become vouchers in the ledger.
source: {exchange: oa.events, binding_key: expense.approved}
concurrency: 16
steps:
  - filter: "amount > `0`"
  - to: {adapter: ledger-rest, operation: create_voucher, compensate: {operation: cancel_voucher}}
    label: create-voucher
  - choice:
      - when: "amount > `50000`"
        steps:
          - publish: {exchange: finance.review, routing_key: voucher.large}
            label: send-to-review
      - otherwise:
          - publish: {exchange: finance.vouchers, routing_key: voucher.created}
            label: announce
"""

TESTS = """\
route: oa-expense-to-voucher
cases:
  - name: a large claim goes to review
    input: {body: {claim_id: "EXP-1", amount: 60000.00}}
    mocks: {create-voucher: {body: {voucher_id: "V-1", amount: 60000.00}}}
    expect:
      published: [{exchange: finance.review, routing_key: voucher.large}]
  - name: a small claim is announced
    input: {body: {claim_id: "EXP-2", amount: 10}}
    mocks: {create-voucher: {body: {voucher_id: "V-2", amount: 10}}}
    expect:
      body: {voucher_id: "V-2", amount: 10}
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write(tmp_path, {"adapters/ledger-rest.yaml": ADAPTER, "routes/oa-expense.yaml": ROUTE,
                            "routes/tests/oa-expense.yaml": TESTS})


def esb_cli(root: Path, *args: str, env: dict | None = None):
    return CliRunner().invoke(esb, ["--root", str(root), *args], env=ENV if env is None else env,
                              catch_exceptions=False)


def test_validate_says_ok_and_exits_0_on_a_clean_project(project):
    result = esb_cli(project, "routes", "validate")
    assert result.exit_code == 0
    assert result.stdout == "OK: 1 routes, 1 adapters\n"


def test_validate_lists_each_problem_with_file_line_and_a_fix_and_exits_1(project):
    write(project, {"routes/broken.yaml": """\
        name: broken
        source: {queue: broken}
        steps:
          - valdate: {json_schema: transformers/x.json}
        """})
    result = esb_cli(project, "routes", "validate")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "routes/broken.yaml:4:5: unknown step kind 'valdate' — Did you mean 'validate'?", "1 problem"]


def test_validate_reports_an_unset_secret_variable(project):
    result = esb_cli(project, "routes", "validate", env={"LEDGER_TOKEN": None})
    assert result.exit_code == 1
    assert "adapters/ledger-rest.yaml:4:" in result.stdout
    assert "the variable ${LEDGER_TOKEN} is not set" in result.stdout


def test_other_commands_print_config_problems_one_a_line_on_stderr(project):
    write(project, {"routes/broken.yaml": "name: broken\nsource: {queue: broken}\nsteps: [{to: {}}]\n"})
    result = esb_cli(project, "routes", "list")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "routes/broken.yaml:3:10: 'to' is missing the required field 'adapter' — "
        "add `adapter:` (the adapter's name (adapters/NAME.yaml))",
        "routes/broken.yaml:3:10: 'to' is missing the required field 'operation' — "
        "add `operation:` (an operation listed in the adapter's `operations`)"]


def test_list_shows_each_route_with_its_source_steps_adapters_and_concurrency(project):
    result = esb_cli(project, "routes", "list")
    assert result.exit_code == 0
    row = next(line for line in result.stdout.splitlines() if "oa-expense-to-voucher" in line)
    for cell in ("oa.events/expense.approved → oa-expense-to-voucher", "│ 5 ", "ledger-rest", "16"):
        assert cell in row


def test_list_json_gives_each_route_with_stable_keys(project):
    result = esb_cli(project, "routes", "list", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"routes": [{
        "name": "oa-expense-to-voucher",
        "description": "Approved expense claims from OA become vouchers in the ledger.",
        "source": {"queue": "oa-expense-to-voucher", "exchange": "oa.events", "binding_key": "expense.approved",
                   "exchange_type": "topic", "quorum": None, "format": "json", "delivery_limit": 3},
        "steps": 5, "adapters": ["ledger-rest"], "concurrency": 16}]}


def test_show_json_gives_the_steps_branches_and_adapters_with_secrets_masked(project):
    result = esb_cli(project, "routes", "show", "oa-expense-to-voucher", "--json")
    assert result.exit_code == 0
    assert "s3cr3t" not in result.stdout
    route = json.loads(result.stdout, parse_float=Decimal)
    assert (route["name"], route["path"], route["line"]) == ("oa-expense-to-voucher", "routes/oa-expense.yaml", 1)
    backoff = {"initial": Decimal("1.0"), "multiplier": Decimal("4.0"), "max": Decimal("600.0")}
    assert route["retry"] == {"attempts": 5, "in_process": 3, "backoff": backoff}
    assert [step["label"] for step in route["steps"]] == ["filter-1", "create-voucher", "choice-3"]
    assert route["steps"][1]["settings"] == {"adapter": "ledger-rest", "operation": "create_voucher",
                                             "compensate": "cancel_voucher"}
    when, otherwise = route["steps"][2]["branches"]
    assert (when["when"], when["steps"][0]["label"]) == ("amount > `50000`", "send-to-review")
    assert (otherwise["when"], otherwise["steps"][0]["settings"]["exchange"]) == (None, "finance.vouchers")
    [adapter] = route["adapters"]
    assert adapter["settings"]["auth"] == {"bearer": {"token": "***"}}
    assert adapter["operations"]["create_voucher"] == {"method": "POST", "path": "/vouchers"}


LONG = "a-route-with-a-name-long-enough-that-its-row-would-not-fit-in-eighty-columns"


def test_list_is_not_cut_to_80_columns_when_stdout_is_not_a_terminal(project):
    write(project, {"routes/long.yaml": f"name: {LONG}\nsource: {{exchange: some.long.exchange.name, "
                                        f"binding_key: some.long.binding.key}}\nsteps: [{{log: {{message: x}}}}]\n"})
    result = esb_cli(project, "routes", "list", env={**ENV, "COLUMNS": None})
    assert result.exit_code == 0
    row = next(line for line in result.stdout.splitlines() if LONG in line)
    assert f"some.long.exchange.name/some.long.binding.key → {LONG}" in row
    assert len(row) > 160


def test_show_prints_each_step_with_settings_and_the_adapter_with_its_secret_masked(project):
    result = esb_cli(project, "routes", "show", "oa-expense-to-voucher")
    assert result.exit_code == 0
    assert "s3cr3t" not in result.output
    assert "token: '***'" in result.stdout
    assert "  - create-voucher  to  ledger-rest.create_voucher" in result.stdout
    assert "      compensate: cancel_voucher" in result.stdout
    assert "\n      when amount > `50000`:\n        - send-to-review  publish\n" in result.stdout
    assert "\n      otherwise:\n        - announce  publish\n" in result.stdout
    assert "base_url: https://ledger.example.com/api" in result.stdout


def test_show_of_an_unknown_route_suggests_the_nearest_name(project):
    result = esb_cli(project, "routes", "show", "oa-expense-to-vouchr")
    assert result.exit_code == 1
    assert result.stderr == "no route is named 'oa-expense-to-vouchr' — Did you mean 'oa-expense-to-voucher'?\n"


def test_graph_mermaid_draws_the_steps_the_choice_conditions_and_the_exchanges(project):
    result = esb_cli(project, "routes", "graph", "oa-expense-to-voucher")
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("flowchart LR\n")
    assert '["create-voucher<br/>ledger-rest.create_voucher"]' in text
    assert '{"choice-3<br/>choice"}' in text
    assert '-->|"amount > `50000`"|' in text
    assert '-->|"otherwise"|' in text
    assert '{{"finance.review"}}' in text
    assert '-.->|"voucher.large"|' in text


def test_graph_dot_draws_the_same_route_for_graphviz(project):
    result = esb_cli(project, "routes", "graph", "oa-expense-to-voucher", "--format", "dot")
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith('digraph "oa-expense-to-voucher" {')
    assert '[label="create-voucher\\nledger-rest.create_voucher", shape=box, style=rounded]' in text
    assert '[label="amount > `50000`"]' in text
    assert "shape=diamond" in text


def test_both_branches_of_a_choice_rejoin_before_the_end(project):
    text = esb_cli(project, "routes", "graph", "oa-expense-to-voucher").stdout
    edges_to_done = [line.split()[0] for line in text.splitlines() if line.strip().endswith("--> done")]
    assert len(edges_to_done) == 2


def test_graph_output_is_written_to_a_file(project, tmp_path):
    target = tmp_path / "route.mmd"
    result = esb_cli(project, "routes", "graph", "oa-expense-to-voucher", "--output", str(target))
    assert result.exit_code == 0
    assert target.read_text(encoding="utf-8").startswith("flowchart LR")


def test_graph_svg_without_graphviz_says_how_to_get_it(project, monkeypatch):
    monkeypatch.setattr("esb.routes.graph.shutil.which", lambda name: None)
    result = esb_cli(project, "routes", "graph", "oa-expense-to-voucher", "--format", "svg")
    assert result.exit_code == 1
    assert "needs Graphviz's `dot` program" in result.stderr


def test_explain_prints_the_description_each_field_and_the_example(tmp_path):
    result = esb_cli(tmp_path, "routes", "explain", "to")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("to: Call an operation of an adapter")
    assert any(line.split()[:3] == ["adapter", "string", "required"] for line in lines)
    assert any(line.split()[:3] == ["into", "string", "optional"] for line in lines)
    assert "  - to:\n      adapter: ledger-rest\n      operation: create_voucher\n" in result.stdout


def test_explain_of_an_unknown_kind_suggests_the_nearest(tmp_path):
    result = esb_cli(tmp_path, "routes", "explain", "publsh")
    assert result.exit_code == 1
    assert result.stderr == "nothing to explain is named publsh. Did you mean 'publish'?\n"


def test_explain_without_a_kind_lists_every_step_kind_file_format_and_adapter_kind_with_one_line(tmp_path):
    result = esb_cli(tmp_path, "routes", "explain")
    assert result.exit_code == 0
    sections = result.stdout.split("\n\n")
    names = [[line.split()[0] for line in section.splitlines()[1:]] for section in sections]
    assert [section.splitlines()[0] for section in sections] == ["step kinds:", "file formats:", "adapter kinds:"]
    assert names == [STEP_KINDS.names(), ["route", "adapter"], ["rest", "sftp", "soap"]]


def test_explain_summaries_are_whole_first_sentences_never_cut_inside_brackets_or_after_e_g(tmp_path):
    lines = [line for line in esb_cli(tmp_path, "routes", "explain").stdout.splitlines() if line.startswith("  ")]
    function = next(line for line in lines if line.split()[0] == "function")
    assert function.endswith("or JSON when it returns an object or a list (a parser of text, e.g. MT940).")
    for line in lines:
        assert line.endswith("."), line
        assert line.count("(") == line.count(")"), line


@pytest.mark.parametrize(("text", "first"), [
    ("One. Two.", "One."),
    ("Call f (e.g. MT940). Then more.", "Call f (e.g. MT940)."),
    ("A list, i.e. items. B.", "A list, i.e. items."),
    ("Files from adapters/*.yaml. The rest.", "Files from adapters/*.yaml."),
    ("No full stop at all", "No full stop at all"),
])
def test_first_sentence_ends_at_a_full_stop_outside_brackets_and_abbreviations(text, first):
    from esb.cli.routes import first_sentence
    assert first_sentence(text) == first


def test_explain_route_prints_the_route_format_its_fields_and_an_example(tmp_path):
    result = esb_cli(tmp_path, "routes", "explain", "route")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("route: A route file, routes/NAME.yaml")
    for field in (["name", "string", "required"], ["source", "object", "required"], ["binding_key", "string"],
                  ["initial", "string", "or", "integer", "optional"], ["steps", "array", "required"]):
        assert any(line.split()[:len(field)] == field for line in lines), field
    assert "example:\n  name: oa-expense-to-voucher\n" in result.stdout


def test_the_route_and_adapter_examples_explain_prints_are_valid_files(tmp_path):
    from esb.cli.formats import ADAPTER_EXAMPLE, ROUTE_EXAMPLE
    from esb.loading.project import load_project
    adapter = yaml.safe_dump(ADAPTER_EXAMPLE).replace("${LEDGER_TOKEN}", "t")
    route = yaml.safe_dump(ROUTE_EXAMPLE)
    write(tmp_path, {"adapters/ledger-rest.yaml": adapter,
                     "routes/r.yaml": route, "transformers/schemas/expense-approved.json": '{"type": "object"}'})
    assert list(load_project(tmp_path, {}).routes) == ["oa-expense-to-voucher"]


def test_explain_an_adapter_kind_prints_its_fields_with_each_operation_s_fields(tmp_path):
    result = esb_cli(tmp_path, "routes", "explain", "rest")
    assert result.exit_code == 0
    lines = [line.split() for line in result.stdout.splitlines()]
    assert result.stdout.startswith("rest: An HTTP/JSON endpoint such as a ledger API.")
    assert next(words for words in lines if words[:1] == ["base_url"])[:3] == ["base_url", "string", "required"]
    at = lines.index(next(w for w in lines if w[:1] == ["operations"]))
    assert lines[at + 1][:2] == ["NAME", "object"] and lines[at + 2][:1] == ["method"]
    adapter = esb_cli(tmp_path, "routes", "explain", "adapter")
    assert adapter.exit_code == 0 and "kind         one of rest|sftp|soap  required" in adapter.stdout


def test_route_tests_print_a_line_per_case_and_a_summary(project):
    result = esb_cli(project, "routes", "test")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["PASS oa-expense-to-voucher :: a large claim goes to review",
                                          "PASS oa-expense-to-voucher :: a small claim is announced",
                                          "2 passed, 0 failed"]


def test_a_failing_route_test_prints_its_reasons_and_exits_1(project):
    wrong = TESTS.replace('      body: {voucher_id: "V-2"', '      body: {voucher_id: "V-3"')
    write(project, {"routes/tests/oa-expense.yaml": wrong})
    result = esb_cli(project, "routes", "test", "oa-expense-to-voucher")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == [
        'FAIL oa-expense-to-voucher :: a small claim is announced — body.voucher_id: expected "V-3", got "V-2" '
        "(routes/tests/oa-expense.yaml:8)",
        "1 passed, 1 failed"]


def test_route_tests_of_an_unknown_route_suggest_the_nearest_name(project):
    result = esb_cli(project, "routes", "test", "oa-expense")
    assert result.exit_code == 1
    assert "Did you mean 'oa-expense-to-voucher'?" in result.stderr


def test_version_prints_the_package_version(tmp_path):
    result = esb_cli(tmp_path, "--version")
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_a_root_that_does_not_exist_is_refused(tmp_path):
    result = esb_cli(tmp_path / "nowhere", "routes", "validate")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


# -- secrets (one rule: esb.loading.secrets) -----------------------------------------------------
SECRET_HEADERS = {"X-Auth": "xauth-value-1", "Ocp-Apim-Subscription-Key": "apim-value-2",
                  "X-Custom-Auth-Thing": "custom-value-3"}


def test_show_masks_every_header_whose_name_says_secret(project):
    headers = "".join(f"\n  {name}: {value}" for name, value in SECRET_HEADERS.items())
    write(project, {"adapters/ledger-rest.yaml": ADAPTER.replace("auth:", f"headers:{headers}\nauth:")})
    result = esb_cli(project, "routes", "show", "oa-expense-to-voucher")
    assert result.exit_code == 0
    for name, value in SECRET_HEADERS.items():
        assert value not in result.stdout
        assert f"{name}: '***'" in result.stdout


def test_show_masks_a_value_from_a_secret_variable_under_any_name(project):
    write(project, {"adapters/ledger-rest.yaml": ADAPTER.replace("auth:", "headers: {X-Tenant: '${LEDGER_TOKEN}'}\n"
                                                                           "auth:")})
    result = esb_cli(project, "routes", "show", "oa-expense-to-voucher")
    assert "s3cr3t" not in result.stdout and "X-Tenant: '***'" in result.stdout


LOGGING_ROUTE = """\
name: noisy
source: {exchange: oa.events, binding_key: noisy}
steps:
  - log:
      message: "token is ${LEDGER_TOKEN}"
      fields: {token: "'${LEDGER_TOKEN}'"}
  - set_headers: {x-token: "'${LEDGER_TOKEN}'"}
"""


def test_validate_warns_at_each_line_where_a_route_would_print_a_secret(project):
    write(project, {"routes/noisy.yaml": LOGGING_ROUTE})
    result = esb_cli(project, "routes", "validate")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "routes/noisy.yaml:5:16: warning: this log step would print the secret ${LEDGER_TOKEN} "
        "— log something else; esb writes *** in its place",
        "routes/noisy.yaml:6:23: warning: this log step would print the secret ${LEDGER_TOKEN} "
        "— log something else; esb writes *** in its place",
        "routes/noisy.yaml:7:28: warning: this header would carry the secret ${LEDGER_TOKEN} into publishes, logs "
        "and dead letters — let the adapter send credentials; esb sets *** in its place",
        "OK: 2 routes, 1 adapters"]


def test_a_log_step_writes_stars_for_a_secret_variable_and_headers_carry_stars(project):
    import structlog
    from structlog.testing import capture_logs

    from esb.loading.project import load_project
    from esb.message import Message
    from esb.steps.pipeline import run_steps
    write(project, {"routes/noisy.yaml": LOGGING_ROUTE})
    route = load_project(project, ENV).routes["noisy"]
    structlog.reset_defaults()  # an earlier `esb` command configured it to drop info lines
    with capture_logs() as logs:
        out = run_steps(route.steps, Message({"a": 1}), None)
    assert "s3cr3t" not in repr(logs) and "s3cr3t" not in repr(out.headers)
    assert logs[0]["message"] == "token is ***" and logs[0]["token"] == "***"
    assert out.headers["x-token"] == "***"  # what a dead letter of this message would carry
