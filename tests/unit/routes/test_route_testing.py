"""Route tests (routes/tests/*.yaml) run in process against mocks: what passes, what fails and why."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from esb.errors import ConfigErrors
from esb.loading.project import load_project
from esb.message import Message
from esb.routes.testing import Mock, RecordingIO, load_route_tests, run_route_tests
from esb.steps.publish import PublishStep

ENV = {"LEDGER_TOKEN": "s3cr3t"}

ADAPTER = """\
name: ledger-rest
kind: rest
base_url: https://ledger.example.com/api
auth: {bearer: {token: "${LEDGER_TOKEN}"}}
operations:
  create_voucher: {method: POST, path: /vouchers}
  archive: {method: POST, path: /archive}
"""

ROUTE = """\
name: expense-to-voucher
source: {exchange: oa.events, binding_key: expense.approved}
steps:
  - to: {adapter: ledger-rest, operation: create_voucher, into: voucher}
    label: create-voucher
  - publish: {exchange: finance.review, routing_key: voucher.created}
    label: announce
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def run(tmp_path: Path, cases: str, route: str = ROUTE, extra: dict[str, str] | None = None):
    write(tmp_path, {"adapters/ledger.yaml": ADAPTER, "routes/route.yaml": route,
                     "routes/tests/route.yaml": cases, **(extra or {})})
    return run_route_tests(load_project(tmp_path, ENV))


def load(tmp_path: Path, cases: str, route: str = ROUTE):
    """The cases as `esb routes validate` loads them: any problem is a ConfigErrors."""
    write(tmp_path, {"adapters/ledger.yaml": ADAPTER, "routes/route.yaml": route, "routes/tests/route.yaml": cases})
    return load_route_tests(load_project(tmp_path, ENV))


def only(results):
    assert len(results) == 1, results
    return results[0]


def test_a_case_whose_expectations_hold_passes(tmp_path):
    result = only(run(tmp_path, """\
        route: expense-to-voucher
        cases:
          - name: an approved claim becomes a voucher
            input:
              body: {claim_id: "EXP-1", amount: 12.50}
              headers: {source: oa}
            mocks:
              create-voucher: {body: {voucher_id: "V-1"}}
            expect:
              body: {claim_id: "EXP-1", amount: 12.50, voucher: {voucher_id: "V-1"}}
              body_contains: {voucher: {voucher_id: "V-1"}}
              headers: {source: oa}
              calls: [{step: create-voucher, body_contains: {amount: 12.5}}]
        """))
    assert result.passed, result.reasons
    assert result.reasons == []
    assert (result.route, result.case) == ("expense-to-voucher", "an approved claim becomes a voucher")
    assert result.where == "routes/tests/route.yaml:3"


def test_a_body_that_differs_is_reported_with_the_path_and_both_values(tmp_path):
    result = only(run(tmp_path, """\
        route: expense-to-voucher
        cases:
          - name: the amount is kept
            input: {body: {claim_id: "EXP-1", amount: 12.50}}
            mocks: {create-voucher: {body: {voucher_id: "V-1"}}}
            expect:
              body_contains: {amount: 13.00, voucher: {voucher_id: "V-2"}, missing_key: 1}
        """))
    assert not result.passed
    assert "body.amount: expected 13.00, got 12.50" in result.reasons
    assert 'body.voucher.voucher_id: expected "V-2", got "V-1"' in result.reasons
    assert "body.missing_key: missing" in result.reasons


def test_exact_body_equality_reports_unexpected_keys_and_compares_decimals_exactly(tmp_path):
    result = only(run(tmp_path, """\
        route: expense-to-voucher
        cases:
          - name: exact
            input: {body: {amount: 0.10}}
            mocks: {create-voucher: {body: {voucher_id: "V-1"}}}
            expect:
              body: {amount: 0.1}
        """))
    assert not result.passed
    assert result.reasons == ['body.voucher: not expected (got {"voucher_id":"V-1"})']


def test_an_expected_error_passes_when_class_step_and_message_match(tmp_path):
    results = run(tmp_path, """\
        route: expense-to-voucher
        cases:
          - name: the ledger refuses the voucher
            input: {body: {claim_id: "EXP-1"}}
            mocks: {create-voucher: {error: validation, message: "amount is missing"}}
            expect:
              error: {class: validation, step: create-voucher, message_contains: "amount"}
              published: []
          - name: a validation error is a permanent one
            input: {body: {claim_id: "EXP-1"}}
            mocks: {create-voucher: {error: validation, message: "amount is missing"}}
            expect: {error: {class: permanent}}
          - name: the wrong class is reported
            input: {body: {claim_id: "EXP-1"}}
            mocks: {create-voucher: {error: transient, message: "timeout"}}
            expect: {error: {class: business}}
        """)
    assert [r.passed for r in results] == [True, True, False]
    assert results[2].reasons == ["error: expected class business, got a transient error at step "
                                  "'create-voucher': timeout"]


def test_an_unexpected_failure_names_the_error_class_the_step_and_the_message(tmp_path):
    result = only(run(tmp_path, """\
        route: expense-to-voucher
        cases:
          - name: the ledger is down
            input: {body: {claim_id: "EXP-1"}}
            mocks: {create-voucher: {error: transient, message: "connection refused"}}
            expect: {body_contains: {claim_id: "EXP-1"}}
        """))
    assert result.reasons == ["the route failed with a transient error at step 'create-voucher': connection refused"]


def test_an_expected_error_that_does_not_happen_fails_the_case(tmp_path):
    result = only(run(tmp_path, """\
        route: expense-to-voucher
        cases:
          - name: should fail
            input: {body: {claim_id: "EXP-1"}}
            mocks: {create-voucher: {body: {}}}
            expect: {error: {class: validation}}
        """))
    assert result.reasons == ["expected a validation error, but the route succeeded"]


def test_a_to_step_without_a_mock_fails_the_case_with_a_clear_reason(tmp_path):
    result = only(run(tmp_path, """\
        route: expense-to-voucher
        cases:
          - name: forgot the mock
            input: {body: {claim_id: "EXP-1"}}
        """))
    assert not result.passed
    assert result.reasons == ["the step 'create-voucher' calls ledger-rest.create_voucher but the case has no mock "
                              "for it — add `mocks: {create-voucher: {body: ...}}`"]


def test_publishes_are_checked_exactly_and_in_order(tmp_path):
    results = run(tmp_path, """\
        route: expense-to-voucher
        cases:
          - name: the voucher is announced
            input: {body: {claim_id: "EXP-1"}}
            mocks: {create-voucher: {body: {voucher_id: "V-1"}}}
            expect:
              published:
                - exchange: finance.review
                  routing_key: voucher.created
                  body_contains: {voucher: {voucher_id: "V-1"}}
          - name: nothing is published
            input: {body: {claim_id: "EXP-1"}}
            mocks: {create-voucher: {body: {voucher_id: "V-1"}}}
            expect: {published: []}
          - name: the wrong key
            input: {body: {claim_id: "EXP-1"}}
            mocks: {create-voucher: {body: {voucher_id: "V-1"}}}
            expect: {published: [{exchange: finance.review, routing_key: voucher.large}]}
        """)
    assert [r.passed for r in results] == [True, False, False]
    assert results[1].reasons == ["published: expected 0, got 1 (finance.review voucher.created)"]
    assert results[2].reasons == ["published[0].routing_key: expected 'voucher.large', got 'voucher.created'"]


def test_xpath_reads_the_xml_body_with_d_as_the_default_namespace(tmp_path):
    route = """\
        name: archive-receipt
        source: {queue: receipts}
        steps:
          - to: {adapter: ledger-rest, operation: archive}
            label: archive
        """
    receipt = '<Receipt xmlns="urn:example:receipt"><Line>1.50</Line><Line>2.25</Line><Total>3.75</Total></Receipt>'
    results = run(tmp_path, f"""\
        route: archive-receipt
        cases:
          - name: the receipt is read
            input: {{body: {{id: 1}}}}
            mocks: {{archive: {{xml: '{receipt}'}}}}
            expect:
              xpath:
                "string(//d:Total)": "3.75"
                "count(//d:Line)": 2
                "//d:Line[2]": 2.25
          - name: a wrong value is reported
            input: {{body: {{id: 1}}}}
            mocks: {{archive: {{xml: '{receipt}'}}}}
            expect:
              xpath: {{"string(//d:Total)": "4.00"}}
        """, route=route)
    assert results[0].passed, results[0].reasons
    assert results[1].reasons == ["xpath string(//d:Total): expected '4.00', got '3.75'"]


def test_an_xml_file_input_is_checked_against_its_xsd_and_by_xpath(tmp_path, testdata):
    pain = testdata / "iso20022" / "pain001"
    route = """\
        name: payments-out
        source: {queue: payments}
        steps:
          - publish: {exchange: bank.out, routing_key: pain001}
        """
    result = only(run(tmp_path, f"""\
        route: payments-out
        cases:
          - name: a pain.001 file goes out unchanged
            input: {{file: "{pain / 'pain.001.001.03.xml'}"}}
            expect:
              xsd: "{pain / 'pain.001.001.03.xsd'}"
              xpath: {{"string(//d:GrpHdr/d:CtrlSum)": "", "string(//d:PmtInf/d:CtrlSum)": 6655.86}}
              published: [{{exchange: bank.out, routing_key: pain001}}]
        """, route=route))
    assert result.passed, result.reasons


def test_an_xml_body_that_breaks_its_xsd_fails_the_case(tmp_path, testdata):
    xsd = testdata / "iso20022" / "pain001" / "pain.001.001.03.xsd"
    route = """\
        name: payments-out
        source: {queue: payments}
        steps:
          - publish: {exchange: bank.out, routing_key: pain001}
        """
    result = only(run(tmp_path, f"""\
        route: payments-out
        cases:
          - name: not a payment
            input: {{xml: '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"><Nope/></Document>'}}
            expect: {{xsd: "{xsd}"}}
        """, route=route))
    assert not result.passed
    assert result.reasons[0].startswith("xsd pain.001.001.03.xsd: XML does not match its schema")


def test_a_test_file_naming_an_unknown_route_is_a_config_error_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigErrors) as raised:
        load(tmp_path, """\
            route: expense-to-vouchr
            cases:
              - {name: x, input: {body: {}}}
            """)
    assert [str(e) for e in raised.value.errors] == [
        "routes/tests/route.yaml:1:8: no route is named 'expense-to-vouchr' — Did you mean 'expense-to-voucher'?"]


def test_a_mock_for_an_unknown_label_is_a_config_error_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigErrors) as raised:
        load(tmp_path, """\
            route: expense-to-voucher
            cases:
              - name: typo
                input: {body: {}}
                mocks:
                  create-vouchr: {body: {}}
                  announce: {body: {}}
            """)
    messages = [str(e) for e in raised.value.errors]
    assert messages == [
        "routes/tests/route.yaml:6:7: the route 'expense-to-voucher' has no `to` step labelled 'create-vouchr' — "
        "Did you mean 'create-voucher'?",
        "routes/tests/route.yaml:7:7: the step 'announce' is a `publish` step; only `to` steps fit here — "
        "name the label of a `to` step"]


def test_a_badly_formed_test_file_is_reported_with_its_line(tmp_path):
    write(tmp_path, {"adapters/ledger.yaml": ADAPTER, "routes/route.yaml": ROUTE,
                     "routes/tests/route.yaml": "route: expense-to-voucher\ncases:\n  - name: x\n    inputs: {}\n"})
    with pytest.raises(ConfigErrors) as raised:
        load_route_tests(load_project(tmp_path, ENV))
    assert [f"{e.path}:{e.line}" for e in raised.value.errors] == ["routes/tests/route.yaml:3",
                                                                  "routes/tests/route.yaml:4"]


def test_recording_io_answers_from_mocks_and_records_publishes():
    io = RecordingIO({"create-voucher": Mock(response=Message({"voucher_id": "V-1"}))})
    step = PublishStep("announce", "finance.review", "voucher.created")
    request = Message({"claim_id": "EXP-1"}, headers={"source": "oa"})
    to_step = type("FakeTo", (), {"label": "create-voucher"})()
    response = io.call(to_step, "ledger-rest", "create_voucher", request)
    io.publish(step, "finance.review", "voucher.created", request)
    assert response.body == {"voucher_id": "V-1"}
    assert response.message_id == request.message_id
    assert [c.step for c in io.calls] == ["create-voucher"]
    assert [(p.exchange, p.routing_key) for p in io.published] == [("finance.review", "voucher.created")]


def test_dropped_says_whether_a_filter_stopped_the_message(tmp_path):
    route = """\
        name: large-only
        source: {queue: large}
        steps:
          - filter: "amount > `100`"
          - choice:
              - when: "amount > `1000`"
                steps: [{publish: {exchange: finance.review, routing_key: voucher.large}}]
        """
    results = run(tmp_path, """\
        route: large-only
        cases:
          - name: a small amount is dropped
            input: {body: {amount: 5}}
            expect: {dropped: true, published: []}
          - name: a very large amount goes to review
            input: {body: {amount: 5000.00}}
            expect:
              published: [{exchange: finance.review, routing_key: voucher.large, body: {amount: 5000}}]
          - name: a drop nobody expected
            input: {body: {amount: 5}}
          - name: a drop that does not happen
            input: {body: {amount: 500}}
            expect: {dropped: true}
        """, route=route)
    assert [r.passed for r in results] == [True, True, False, False]
    assert results[2].reasons == ["a filter dropped the message (write `dropped: true` if that is expected)"]
    assert results[3].reasons == ["expected a filter to drop the message, but it went through"]


def test_a_passthrough_mock_answers_with_the_request_unchanged(tmp_path):
    from esb.message import Message
    from esb.routes.testing import Mock
    request = Message({"a": 1})
    assert Mock().answer(request) is request
