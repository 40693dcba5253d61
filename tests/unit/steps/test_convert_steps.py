"""The `json_to_xml` and `xml_to_json` steps: exact conversions, lists decided by config or XSD."""

from decimal import Decimal

import pytest
from routebuild import route_builders

from esb.errors import TransformError
from esb.message import JSON, XML, Message
from esb.steps.pipeline import StepFailed, run_steps

HEAD = "name: r\nsource: {exchange: erp.events, binding_key: k}\nsteps:\n"
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
VOUCHER = {"voucher_no": "V-1", "total": Decimal("50000.10"),
           "lines": [{"@no": "1", "amount": Decimal("1.10")}, {"@no": "2", "amount": 2}]}


class NoIO:
    def call(self, step, adapter, operation, message):
        raise AssertionError("conversions must not call adapters")

    def publish(self, step, exchange, routing_key, message):
        raise AssertionError("conversions must not publish")


build, route_with = route_builders(HEAD)


def run(route, body, content_type=JSON) -> Message:
    return run_steps(route.steps, Message(body, content_type=content_type), NoIO())


def failure(route, body, content_type=JSON) -> TransformError:
    with pytest.raises(StepFailed) as caught:
        run(route, body, content_type)
    assert isinstance(caught.value.error, TransformError)
    return caught.value.error


def test_json_becomes_an_xml_document_wrapped_in_the_root_element(tmp_path):
    out = run(route_with(tmp_path, "  - json_to_xml: {root: VoucherReceipt}\n"), VOUCHER)
    assert out.content_type == XML
    assert out.body == (DECLARATION + "<VoucherReceipt><voucher_no>V-1</voucher_no><total>50000.10</total>"
                        '<lines no="1"><amount>1.10</amount></lines><lines no="2"><amount>2</amount></lines>'
                        "</VoucherReceipt>")


def test_the_root_wraps_even_a_body_with_one_key(tmp_path):
    out = run(route_with(tmp_path, "  - json_to_xml: {root: Receipt}\n"), {"voucher_no": "V-1"})
    assert out.body == DECLARATION + "<Receipt><voucher_no>V-1</voucher_no></Receipt>"


def test_without_a_root_a_one_key_body_is_the_document_and_pretty_indents_it(tmp_path):
    out = run(route_with(tmp_path, "  - json_to_xml: {pretty: true}\n"), {"Voucher": {"no": "V-1"}})
    assert out.body == DECLARATION + "<Voucher>\n  <no>V-1</no>\n</Voucher>\n"


def test_a_step_with_no_settings_is_allowed(tmp_path):
    route = route_with(tmp_path, "  - json_to_xml:\n  - xml_to_json:\n")
    assert run(route, {"Voucher": {"no": "V-1"}}).body == {"Voucher": {"no": "V-1"}}


def test_a_body_with_several_keys_and_no_root_is_a_transform_error(tmp_path):
    error = failure(route_with(tmp_path, "  - json_to_xml:\n"), {"a": "1", "b": "2"})
    assert "needs one root element" in error.message


def test_a_float_is_refused_rather_than_rounded(tmp_path):
    error = failure(route_with(tmp_path, "  - json_to_xml: {root: V}\n"), {"total": 0.1})
    assert "float" in error.message


def test_an_xml_body_given_to_json_to_xml_is_a_transform_error(tmp_path):
    error = failure(route_with(tmp_path, "  - json_to_xml: {root: V}\n"), "<V/>", XML)
    assert error.message == "json_to_xml needs a JSON body, not application/xml"


def test_a_misspelt_setting_is_reported_at_its_line(tmp_path):
    _, errors = build(tmp_path, "  - json_to_xml: {rot: V}\n")
    assert [str(e) for e in errors] == ["r.yaml:4:19: unknown key 'rot' — Did you mean 'root'?"]


def test_a_pain001_document_becomes_json_with_forced_lists_and_text_amounts(tmp_path, testdata):
    route = route_with(tmp_path, "  - xml_to_json: {force_list: [PmtInf, CdtTrfTxInf]}\n")
    out = run(route, (testdata / "iso20022" / "pain001" / "pain.001.001.03.xml").read_bytes(), XML)
    assert out.content_type == JSON
    initiation = out.body["Document"]["CstmrCdtTrfInitn"]
    assert out.body["Document"]["@xmlns"] == "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"
    [payment] = initiation["PmtInf"]
    assert payment["CtrlSum"] == "6655.86"
    assert payment["CdtTrfTxInf"][0]["Amt"]["InstdAmt"] == {"@Ccy": "EUR", "#text": "6543.14"}


def test_the_xsd_decides_which_elements_are_lists(tmp_path, testdata):
    folder = testdata / "iso20022" / "pain001"
    route = route_with(tmp_path, f"  - xml_to_json: {{xsd: {folder / 'pain.001.001.03.xsd'}}}\n")
    out = run(route, (folder / "pain.001.001.03.xml").read_text(), XML)
    initiation = out.body["Document"]["CstmrCdtTrfInitn"]
    assert isinstance(initiation["PmtInf"], list) and len(initiation["PmtInf"]) == 1
    assert isinstance(initiation["GrpHdr"], dict)


def test_json_to_xml_and_back_gives_the_same_text(tmp_path):
    route = route_with(tmp_path, "  - json_to_xml: {root: Voucher}\n  - xml_to_json: {force_list: [lines]}\n")
    out = run(route, VOUCHER)
    assert out.body == {"Voucher": {"voucher_no": "V-1", "total": "50000.10", "lines": [
        {"@no": "1", "amount": "1.10"}, {"@no": "2", "amount": "2"}]}}


def test_a_missing_xsd_is_reported_at_its_line(tmp_path):
    route, errors = build(tmp_path, "  - xml_to_json:\n      xsd: transformers/nope.xsd\n")
    assert route is None
    assert [(e.line, e.col) for e in errors] == [(5, 12)]
    assert "the file 'transformers/nope.xsd' does not exist" in errors[0].message


def test_an_xsd_that_does_not_compile_is_reported_at_its_line(tmp_path):
    _, errors = build(tmp_path, "  - xml_to_json: {xsd: s.xsd}\n", {"s.xsd": "<schema/>"})
    assert [(e.line, e.col) for e in errors] == [(4, 24)]
    assert errors[0].message.startswith("s.xsd: the XML Schema cannot be used")


def test_xml_that_is_not_well_formed_is_a_transform_error(tmp_path):
    error = failure(route_with(tmp_path, "  - xml_to_json:\n"), "<a><b></a>", XML)
    assert "XML syntax error" in error.message


def test_an_xml_bomb_is_refused(tmp_path, testdata):
    route = route_with(tmp_path, "  - xml_to_json:\n")
    error = failure(route, (testdata / "xml-attacks" / "xmlbomb.xml").read_bytes(), XML)
    assert "DTD" in error.message


def test_a_json_body_given_to_xml_to_json_is_a_transform_error(tmp_path):
    error = failure(route_with(tmp_path, "  - xml_to_json:\n"), {"a": "1"})
    assert error.message == "xml_to_json needs an XML body, not application/json"


def test_a_17_byte_body_that_would_become_100_mb_of_xml_is_refused_naming_the_field(tmp_path):
    route = route_with(tmp_path, "  - json_to_xml: {root: Receipt}\n")
    error = failure(route, {"a": Decimal("1e99999999")})
    assert error.message.startswith("the number at $.Receipt.a would be 100,000,000 characters long")
    assert error.step == "json_to_xml-1"
