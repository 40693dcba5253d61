"""The map, filter, choice, set_headers, log and function steps, built from route YAML and run."""

import json
from decimal import Decimal

import pytest
import structlog
from routebuild import route_builders
from structlog.testing import capture_logs

from esb.errors import BusinessError, TransformError
from esb.message import JSON, TEXT, XML, Message
from esb.steps import STEP_KINDS
from esb.steps.function import load_module
from esb.steps.pipeline import StepFailed, run_steps

HEAD = "name: r\nsource: {exchange: oa.events, binding_key: k}\nsteps:\n"
CLAIM = {"claim_id": "C-17", "total": Decimal("60000.00"), "currency": "EUR",
         "items": [{"account": "6800", "amount": Decimal("59000.00")}, {"account": "6810", "amount": Decimal("1000")}]}


class FakeIO:
    """Records publishes; adapter calls answer with a fixed body."""

    def __init__(self):
        self.published = []

    def call(self, step, adapter, operation, message):
        return message.with_body({"ok": True})

    def publish(self, step, exchange, routing_key, message):
        self.published.append((step.label, exchange, routing_key, message))


build, route_with = route_builders(HEAD)


def errors_of(tmp_path, steps: str, files: dict | None = None) -> list:
    route, errors = build(tmp_path, steps, files)
    assert route is None and errors
    return errors


def run(route, body=CLAIM, io=None, **message):
    return run_steps(route.steps, Message(body, **message), io or FakeIO())


def failure(route, body=CLAIM, **message):
    with pytest.raises(StepFailed) as caught:
        run(route, body, **message)
    return caught.value.error


@pytest.fixture(autouse=True)
def _default_structlog():
    """capture_logs works on structlog's defaults, whatever configuration another test left behind."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def test_every_step_kind_here_documents_itself_for_explain():
    for kind in ("map", "filter", "choice", "set_headers", "log", "function"):
        schema = STEP_KINDS.get(kind).schema
        assert schema["description"] and schema["examples"], kind


# -- map -----------------------------------------------------------------------------------

MAPPING = """\
description: Claims as vouchers.
output:
  voucher_no: "concat('EXP-', claim_id)"
  source: "'OA'"
  amount: "round(total, `2`)"
  source_system: "header('source')"
"""


def test_map_with_a_file_builds_the_new_body(tmp_path):
    route = route_with(tmp_path, "  - map: transformers/claim-to-voucher.yaml\n",
                       {"transformers/claim-to-voucher.yaml": MAPPING})
    result = run(route, headers={"source": "oa"})
    assert result.body == {"voucher_no": "EXP-C-17", "source": "OA", "amount": Decimal("60000.00"),
                           "source_system": "oa"}


def test_map_accepts_file_written_as_a_key(tmp_path):
    route = route_with(tmp_path, "  - map: {file: transformers/m.yaml}\n", {"transformers/m.yaml": MAPPING})
    assert run(route).body["voucher_no"] == "EXP-C-17"


def test_map_inline_output_and_expression(tmp_path):
    route = route_with(tmp_path, '  - map: {output: {id: claim_id, n: "length(items)"}}\n'
                                 '  - map: {expression: "merge(@, {checked: `true`})"}\n')
    assert run(route).body == {"id": "C-17", "n": 2, "checked": True}


def test_map_refuses_an_xml_body_and_says_to_convert_it(tmp_path):
    route = route_with(tmp_path, "  - map: {expression: claim_id}\n")
    error = failure(route, "<claim/>", content_type=XML)
    assert isinstance(error, TransformError)
    assert "map needs a JSON body" in error.message and "add xml_to_json before it" in error.message
    assert error.step == "map-1"


def test_map_reports_a_missing_file_with_a_suggestion(tmp_path):
    errors = errors_of(tmp_path, "  - map: transformers/claim-to-vouchr.yaml\n",
                       {"transformers/claim-to-voucher.yaml": MAPPING})
    assert errors[0].line == 4 and "does not exist" in errors[0].message
    assert "claim-to-voucher.yaml" in errors[0].hint


def test_map_reports_bad_expressions_in_its_file_at_their_line(tmp_path):
    errors = errors_of(tmp_path, "  - map: transformers/m.yaml\n",
                       {"transformers/m.yaml": "output:\n  a: claim_id\n  b: \"total >\"\n"})
    assert [(e.path, e.line) for e in errors] == [("transformers/m.yaml", 3)]


def test_map_reports_bad_inline_expressions_at_their_route_line(tmp_path):
    errors = errors_of(tmp_path, "  - map:\n      output:\n        a: claim_id\n        b: \"total >\"\n")
    assert [(e.path, e.line) for e in errors] == [("r.yaml", 7)]


def test_map_refuses_a_file_beside_an_inline_spec(tmp_path):
    errors = errors_of(tmp_path, "  - map: {file: transformers/m.yaml, expression: a}\n",
                       {"transformers/m.yaml": MAPPING})
    assert "cannot stand beside" in errors[0].message


# -- filter --------------------------------------------------------------------------------

def test_filter_stops_a_message_whose_condition_is_false(tmp_path):
    route = route_with(tmp_path, "  - filter: \"total > `100000`\"\n  - publish: {exchange: x, routing_key: y}\n")
    io = FakeIO()
    assert run(route, io=io) is None
    assert io.published == []


def test_filter_passes_a_message_whose_condition_is_true_unchanged(tmp_path):
    route = route_with(tmp_path, "  - filter: {when: \"total > `50000`\"}\n")
    message = Message(CLAIM)
    assert run_steps(route.steps, message, FakeIO()) is message


def test_filter_can_test_headers_of_an_xml_message(tmp_path):
    route = route_with(tmp_path, "  - filter: \"header('source') == 'bank'\"\n")
    assert run(route, "<stmt/>", content_type=XML, headers={"source": "bank"}) is not None
    assert run(route, "<stmt/>", content_type=XML, headers={"source": "oa"}) is None


def test_filter_on_body_fields_of_an_xml_message_is_an_error_not_a_silent_drop(tmp_path):
    route = route_with(tmp_path, "  - filter: \"total > `1`\"\n")
    assert "add xml_to_json before it" in failure(route, "<stmt/>", content_type=XML).message


def test_filter_reports_a_bad_condition_at_its_line(tmp_path):
    errors = errors_of(tmp_path, "  - filter:\n      when: \"total >\"\n")
    assert errors[0].line == 5 and "`total >`" in errors[0].message


# -- choice --------------------------------------------------------------------------------

CHOICE = """\
  - choice:
      - when: "total > `50000`"
        steps:
          - publish: {exchange: finance.review, routing_key: voucher.large}
      - when: "total > `1000`"
        steps:
          - publish: {exchange: finance.review, routing_key: voucher.medium}
      - otherwise:
          - set_headers: {size: "'small'"}
  - set_headers: {after: "'yes'"}
"""


def test_choice_runs_only_the_first_matching_branch(tmp_path):
    io = FakeIO()
    result = run(route_with(tmp_path, CHOICE), io=io)
    assert [(p[1], p[2]) for p in io.published] == [("finance.review", "voucher.large")]
    assert result.headers["after"] == "yes"


def test_choice_runs_otherwise_when_no_condition_holds(tmp_path):
    io = FakeIO()
    result = run(route_with(tmp_path, CHOICE), {**CLAIM, "total": Decimal("10")}, io=io)
    assert io.published == [] and result.headers["size"] == "small"


def test_choice_without_a_match_or_otherwise_passes_the_message_unchanged(tmp_path):
    route = route_with(tmp_path, "  - choice:\n      - when: \"total > `100000`\"\n        steps: [{log: big}]\n")
    message = Message(CLAIM)
    assert run_steps(route.steps, message, FakeIO()) is message


def test_choice_branch_result_continues_down_the_route(tmp_path):
    route = route_with(tmp_path, "  - choice:\n      - when: \"currency == 'EUR'\"\n"
                                 "        steps: [{map: {expression: \"{id: claim_id}\"}}]\n"
                                 "  - set_headers: {id: id}\n")
    assert run(route).headers["id"] == "C-17"


def test_a_filter_inside_a_choice_stops_the_message(tmp_path):
    route = route_with(tmp_path, "  - choice:\n      - when: \"total > `1`\"\n        steps: [{filter: \"`false`\"}]\n"
                                 "  - publish: {exchange: x, routing_key: y}\n")
    io = FakeIO()
    assert run(route, io=io) is None and io.published == []


def test_choice_branches_are_listed_with_their_conditions_and_labels(tmp_path):
    choice = route_with(tmp_path, CHOICE).steps[0]
    assert [(cond, [s.label for s in steps]) for cond, steps in choice.branches()] == [
        ("total > `50000`", ["choice-1.1.publish-1"]),
        ("total > `1000`", ["choice-1.2.publish-1"]),
        ("otherwise", ["choice-1.otherwise.set_headers-1"]),
    ]
    assert choice.settings() == {"when": ["total > `50000`", "total > `1000`"], "otherwise": "1 steps"}


def test_a_failure_inside_a_branch_names_the_nested_step(tmp_path):
    route = route_with(tmp_path, "  - choice:\n      - when: \"total > `1`\"\n"
                                 "        steps: [{map: {expression: \"add(claim_id, `1`)\"}}]\n")
    error = failure(route)
    assert isinstance(error, TransformError) and error.step == "choice-1.1.map-1"


def test_choice_reports_otherwise_that_is_not_last(tmp_path):
    errors = errors_of(tmp_path, "  - choice:\n      - otherwise: [{log: a}]\n"
                                 "      - when: \"total > `1`\"\n        steps: [{log: b}]\n")
    assert errors[0].line == 5 and "must be the last branch" in errors[0].message


def test_choice_reports_bad_nested_steps_and_conditions_at_their_lines(tmp_path):
    errors = errors_of(tmp_path, "  - choice:\n      - when: \"total >\"\n        steps:\n          - publsh: {}\n")
    assert [e.line for e in errors] == [5, 7]
    assert "publish" in errors[1].hint


# -- set_headers ---------------------------------------------------------------------------

def test_set_headers_from_body_constants_and_other_headers(tmp_path):
    route = route_with(tmp_path, "  - set_headers:\n      claim-id: claim_id\n      kind: \"'expense'\"\n"
                                 "      origin: \"default(header('source'), 'unknown')\"\n")
    result = run(route, headers={"keep": "me"})
    assert dict(result.headers) == {"keep": "me", "claim-id": "C-17", "kind": "expense", "origin": "unknown"}


def test_set_headers_refuses_esb_own_header_names(tmp_path):
    errors = errors_of(tmp_path, "  - set_headers: {x-esb-attempt: \"`1`\"}\n")
    assert "esb's own" in errors[0].message


def test_set_headers_reports_a_bad_expression_at_its_line(tmp_path):
    errors = errors_of(tmp_path, "  - set_headers:\n      a: claim_id\n      b: \"[?\"\n")
    assert errors[0].line == 6


# -- log -----------------------------------------------------------------------------------

def test_log_writes_route_log_with_id_step_text_and_fields_but_not_the_body(tmp_path):
    route = route_with(tmp_path, "  - log:\n      message: large voucher\n      level: warning\n"
                                 "      fields: {claim: claim_id, total: total}\n")
    message = Message(CLAIM)
    with capture_logs() as logs:
        result = run_steps(route.steps, message, FakeIO())
    assert result is message
    assert logs == [{"event": "route_log", "log_level": "warning", "message_id": message.message_id,
                     "step": "log-1", "message": "large voucher", "claim": "C-17", "total": "60000.00"}]
    assert "items" not in json.dumps(logs)


def test_log_with_only_a_text_logs_at_info(tmp_path):
    route = route_with(tmp_path, "  - log: received\n")
    with capture_logs() as logs:
        run(route)
    assert logs[0]["log_level"] == "info" and logs[0]["message"] == "received"


def test_a_log_field_that_fails_is_logged_as_unavailable_and_the_message_goes_on(tmp_path):
    route = route_with(tmp_path, "  - log: {message: m, fields: {n: \"add(claim_id, `1`)\"}}\n")
    with capture_logs() as logs:
        assert run(route) is not None
    assert logs[0]["n"].startswith("<not available: add() needs a number")


def test_log_refuses_the_whole_body_and_reserved_field_names(tmp_path):
    errors = errors_of(tmp_path, "  - log: {message: m, fields: {body: \"@\", step: claim_id}}\n")
    assert {e.message.split(" (")[0] for e in errors} == {
        "a log field cannot be the whole body", "the field name 'step' is taken by the log line itself"}


def test_log_level_must_be_a_known_level(tmp_path):
    errors = errors_of(tmp_path, "  - log: {message: m, level: verbose}\n")
    assert "debug" in str(errors[0])


# -- function ------------------------------------------------------------------------------

FUNCTIONS = """\
from decimal import Decimal

from esb.errors import BusinessError


def add_vat(body, headers):
    body["vat"] = (body["total"] * Decimal("0.19")).quantize(Decimal("0.01"))
    body["source"] = headers.get("source")
    return body


def reconcile(body, headers):
    raise BusinessError("the statement does not reconcile")


def as_float(body, headers):
    return {"lines": [{"amount": 1.5}]}


def shout(body, headers):
    return body.upper()


def broken(body, headers):
    return body["nope"]


def one_argument(body):
    return body

RATE = 3
"""


def test_function_result_becomes_the_body(tmp_path):
    route = route_with(tmp_path, "  - function: transformers/functions/vat.py:add_vat\n",
                       {"transformers/functions/vat.py": FUNCTIONS})
    body = {"total": Decimal("100.00")}
    result = run(route, body, headers={"source": "oa"})
    assert result.body == {"total": Decimal("100.00"), "vat": Decimal("19.00"), "source": "oa"}
    assert body == {"total": Decimal("100.00")}, "the function got a copy, the message state is untouched"


def test_function_written_as_file_and_name_keeps_an_xml_body_xml(tmp_path):
    route = route_with(tmp_path, "  - function: {file: transformers/functions/vat.py, name: shout}\n",
                       {"transformers/functions/vat.py": FUNCTIONS})
    result = run(route, "<a/>", content_type=XML)
    assert result.body == "<A/>" and result.content_type == XML


def test_a_function_that_parses_text_into_an_object_makes_the_body_json(tmp_path):
    parser = "def parse(body, headers):\n    return {'lines': body.splitlines()}\n"
    route = route_with(tmp_path, "  - function: transformers/functions/p.py:parse\n",
                       {"transformers/functions/p.py": parser})
    result = run(route, ":20:REF\n:60F:C", content_type=TEXT)
    assert result.body == {"lines": [":20:REF", ":60F:C"]} and result.content_type == JSON


def test_a_business_error_from_a_function_passes_through(tmp_path):
    route = route_with(tmp_path, "  - function: transformers/functions/vat.py:reconcile\n",
                       {"transformers/functions/vat.py": FUNCTIONS})
    error = failure(route)
    assert isinstance(error, BusinessError) and error.message == "the statement does not reconcile"
    assert error.step == "function-1"


def test_a_bug_in_a_function_becomes_a_permanent_failure_of_the_step(tmp_path):
    route = route_with(tmp_path, "  - function: transformers/functions/vat.py:broken\n",
                       {"transformers/functions/vat.py": FUNCTIONS})
    error = failure(route)
    assert error.error_class == "permanent" and "KeyError" in error.message


def test_a_function_returning_a_float_is_refused(tmp_path):
    route = route_with(tmp_path, "  - function: transformers/functions/vat.py:as_float\n",
                       {"transformers/functions/vat.py": FUNCTIONS})
    assert "float at $.lines[0].amount" in failure(route).message


def test_function_that_does_not_exist_is_reported_with_a_suggestion(tmp_path):
    errors = errors_of(tmp_path, "  - function: {file: transformers/functions/vat.py, name: add_vta}\n",
                       {"transformers/functions/vat.py": FUNCTIONS})
    assert "'add_vta'" in errors[0].message and "add_vat" in errors[0].hint and errors[0].line == 4


def test_function_that_is_not_callable_or_takes_the_wrong_arguments_is_reported(tmp_path):
    files = {"transformers/functions/vat.py": FUNCTIONS}
    assert "is not a function" in errors_of(tmp_path, "  - function: transformers/functions/vat.py:RATE\n",
                                            files)[0].message
    assert "(body, headers)" in errors_of(tmp_path, "  - function: transformers/functions/vat.py:one_argument\n",
                                          files)[0].message


def test_function_file_that_does_not_compile_is_a_config_error(tmp_path):
    errors = errors_of(tmp_path, "  - function: transformers/functions/bad.py:f\n",
                       {"transformers/functions/bad.py": "def f(body, headers):\n    return (\n"})
    assert "does not compile" in errors[0].message


def test_function_file_that_fails_at_its_top_level_fails_the_step_when_it_first_runs(tmp_path):
    # validating never runs the file (issue 9 point 6): its top-level code runs with the route
    route = route_with(tmp_path, "  - function: transformers/functions/boom.py:f\n",
                       {"transformers/functions/boom.py": "raise RuntimeError('no config')\ndef f(body, headers):\n"
                                                          "    return body\n"})
    error = failure(route)
    assert error.error_class == "transform" and "RuntimeError: no config" in error.message


def test_function_file_is_loaded_once_and_again_after_it_changes(tmp_path):
    path = tmp_path / "f.py"
    path.write_text("VALUE = 1\n")
    first = load_module(path)
    assert load_module(path) is first
    path.write_text("VALUE = 22\n")
    assert load_module(path).VALUE == 22


def test_function_files_with_the_same_name_in_different_folders_stay_apart(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "util.py").write_text("WHO = 'a'\n")
    (tmp_path / "b" / "util.py").write_text("WHO = 'b'\n")
    assert (load_module(tmp_path / "a" / "util.py").WHO, load_module(tmp_path / "b" / "util.py").WHO) == ("a", "b")


def test_function_shorthand_must_name_a_python_file_and_function(tmp_path):
    errors = errors_of(tmp_path, "  - function: transformers/functions/vat.py\n")
    assert errors[0].line == 4
