"""The `validate` step: JSON Schema and XSD checks, with problems named by field and by line."""

from decimal import Decimal

import pytest
from routebuild import route_builders

from esb.errors import ValidationError
from esb.message import JSON, XML, Message
from esb.steps.pipeline import StepFailed, run_steps

HEAD = "name: r\nsource: {exchange: oa.events, binding_key: k}\nsteps:\n"

CLAIM = {
    "type": "object",
    "required": ["claim_id", "claim"],
    "properties": {
        "claim_id": {"type": "string"},
        "claim": {"type": "object", "required": ["amount"], "properties": {
            "amount": {"type": "number", "minimum": 0, "multipleOf": 0.01},
            "lines": {"type": "integer"},
            "date": {"type": "string", "format": "date"},
        }},
    },
}


class NoIO:
    def call(self, step, adapter, operation, message):
        raise AssertionError("validate must not call adapters")

    def publish(self, step, exchange, routing_key, message):
        raise AssertionError("validate must not publish")


build, route_with = route_builders(HEAD)


def failure(route, body, content_type=JSON) -> ValidationError:
    with pytest.raises(StepFailed) as caught:
        run_steps(route.steps, Message(body, content_type=content_type), NoIO())
    assert isinstance(caught.value.error, ValidationError)
    return caught.value.error


def claim_route(tmp_path, schema=CLAIM):
    return route_with(tmp_path, "  - validate: {json_schema: transformers/schemas/claim.json}\n",
                      {"transformers/schemas/claim.json": schema})


def test_a_body_that_matches_the_json_schema_passes_unchanged(tmp_path):
    body = {"claim_id": "C-1", "claim": {"amount": Decimal("12.50"), "lines": 2}}
    message = Message(body)
    assert run_steps(claim_route(tmp_path).steps, message, NoIO()) is message


def test_a_validation_error_names_the_field_and_the_problem(tmp_path):
    error = failure(claim_route(tmp_path), {"claim_id": "C-1", "claim": {"amount": "12,50"}})
    assert error.message == "claim.amount: '12,50' is not of type 'number'"
    assert error.step == "validate-1"


def test_decimal_amounts_validate_as_numbers_and_whole_decimals_as_integers(tmp_path):
    route = claim_route(tmp_path)
    body = {"claim_id": "C-1", "claim": {"amount": Decimal("0.10"), "lines": Decimal("3")}}
    assert run_steps(route.steps, Message(body), NoIO()).body == body
    error = failure(route, {"claim_id": "C-1", "claim": {"amount": Decimal("0.105"), "lines": Decimal("2.5")}})
    assert "claim.amount: 0.105 is not a multiple of 0.01" in error.message
    assert "claim.lines: 2.5 is not of type 'integer'" in error.message


def test_several_problems_are_joined_and_a_long_list_is_capped(tmp_path):
    schema = {"type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(8)}}
    route = claim_route(tmp_path, schema)
    error = failure(route, {f"f{i}": i for i in range(8)})
    assert error.message.startswith("f0: 0 is not of type 'string'; f1: 1 is not of type 'string'")
    assert error.message.endswith("; and 3 more")


def test_a_missing_required_field_is_named_at_its_parent(tmp_path):
    error = failure(claim_route(tmp_path), {"claim": {}})
    assert error.message == "body: 'claim_id' is a required property; claim: 'amount' is a required property"


def test_formats_are_checked(tmp_path):
    error = failure(claim_route(tmp_path), {"claim_id": "C-1", "claim": {"amount": 1, "date": "2024-13-45"}})
    assert error.message == "claim.date: '2024-13-45' is not a 'date'"


def test_an_xml_body_given_to_a_json_schema_explains_what_to_do(tmp_path):
    error = failure(claim_route(tmp_path), "<claim/>", XML)
    assert "is a JSON Schema and checks JSON bodies" in error.message
    assert "xml_to_json" in error.message


def test_the_schema_draft_named_by_dollar_schema_is_honoured(tmp_path):
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "properties": {"amount": {"type": "number", "maximum": 10, "exclusiveMaximum": True}}}
    error = failure(claim_route(tmp_path, draft4), {"amount": 10})
    assert error.message.startswith("amount: 10 is greater than or equal to the maximum of 10")


def test_a_missing_schema_file_is_reported_at_its_line(tmp_path):
    route, errors = build(tmp_path, "  - validate:\n      json_schema: transformers/schemas/nope.json\n")
    assert route is None
    assert [(e.path, e.line, e.col) for e in errors] == [("r.yaml", 5, 20)]
    assert "the file 'transformers/schemas/nope.json' does not exist" in errors[0].message


def test_an_invalid_json_schema_is_reported_when_the_route_is_built(tmp_path):
    route, errors = build(tmp_path, "  - validate: {json_schema: s.json}\n",
                          {"s.json": {"properties": {"amount": {"type": "numbr"}}}})
    assert route is None
    assert errors[0].line == 4
    assert "s.json: the JSON Schema is invalid at properties.amount.type" in errors[0].message


def test_a_schema_file_that_is_not_json_is_reported_with_its_own_line(tmp_path):
    _, errors = build(tmp_path, "  - validate: {json_schema: s.json}\n", {"s.json": '{\n  "type": "object",\n}'})
    assert errors[0].message.startswith("s.json:3:1: the file is not valid JSON")


def test_an_unknown_schema_draft_is_refused(tmp_path):
    _, errors = build(tmp_path, "  - validate: {json_schema: s.json}\n", {"s.json": {"$schema": "https://x.invalid/s"}})
    assert "is not a JSON Schema draft esb knows" in errors[0].message


def test_json_schema_and_xsd_together_are_refused(tmp_path):
    _, errors = build(tmp_path, "  - validate: {json_schema: s.json, xsd: s.xsd}\n")
    assert len(errors) == 1 and errors[0].line == 4


def test_a_pain001_document_validates_against_the_iso_xsd(tmp_path, testdata):
    folder = testdata / "iso20022" / "pain001"
    route = route_with(tmp_path, f"  - validate: {{xsd: {folder / 'pain.001.001.03.xsd'}}}\n")
    document = (folder / "pain.001.001.03.xml").read_bytes()
    assert run_steps(route.steps, Message(document, content_type=XML), NoIO()).body == document
    assert run_steps(route.steps, Message(document.decode(), content_type=XML), NoIO()) is not None


def test_a_document_that_breaks_its_xsd_fails_validation(tmp_path, testdata):
    folder = testdata / "iso20022" / "camt053"
    route = route_with(tmp_path, f"  - validate: {{xsd: {folder / 'camt.053.001.02.xsd'}}}\n")
    error = failure(route, (folder / "camt053.v2.wrong.xml").read_text(), XML)
    assert "BkToCstmrStmt" in error.message


def test_a_json_body_given_to_an_xsd_explains_what_to_do(tmp_path, testdata):
    xsd = testdata / "iso20022" / "pain001" / "pain.001.001.03.xsd"
    error = failure(route_with(tmp_path, f"  - validate: {{xsd: {xsd}}}\n"), {"Document": {}})
    assert "is an XML Schema and checks XML bodies" in error.message
    assert "json_to_xml" in error.message


def test_an_xml_bomb_is_refused_before_validation(tmp_path, testdata):
    xsd = testdata / "iso20022" / "pain001" / "pain.001.001.03.xsd"
    route = route_with(tmp_path, f"  - validate: {{xsd: {xsd}}}\n")
    error = failure(route, (testdata / "xml-attacks" / "xmlbomb.xml").read_bytes(), XML)
    assert error.message.startswith("the body is not XML that")


def test_a_missing_xsd_is_reported_at_its_line(tmp_path):
    _, errors = build(tmp_path, "  - label: check\n    validate: {xsd: schemas/pain.xsd}\n")
    assert [(e.line, e.col) for e in errors] == [(5, 21)]
    assert "does not exist" in errors[0].message


def test_a_broken_xsd_is_reported_at_the_field(tmp_path):
    _, errors = build(tmp_path, "  - validate: {xsd: s.xsd}\n", {"s.xsd": "<xs:schema xmlns:xs='nope'/>"})
    assert errors[0].line == 4 and errors[0].col == 21
    assert errors[0].message.startswith("s.xsd: the XML Schema cannot be used: XSD s.xsd does not compile: "
                                        "The XML document 's.xsd' is not a schema document")


@pytest.mark.parametrize("amount, size", [(Decimal("1e99999999"), "100,000,000"),
                                          (Decimal("1e-999999999999"), "1,000,000,000,001")])
def test_multiple_of_on_a_number_too_long_to_write_out_is_a_validation_error_naming_the_field(
        tmp_path, amount, size):
    error = failure(claim_route(tmp_path), {"claim_id": "C-1", "claim": {"amount": amount}})
    assert error.message == (f"claim.amount: the number is {size} characters long written out in full, "
                             "over the limit of 1,000")


@pytest.mark.parametrize("amount", [Decimal("0.07"), Decimal("1.2E+3"), Decimal("12.500"), 7])
def test_multiple_of_is_decided_in_exact_decimal_arithmetic(tmp_path, amount):
    body = {"claim_id": "C-1", "claim": {"amount": amount}}
    assert run_steps(claim_route(tmp_path).steps, Message(body), NoIO()).body == body
