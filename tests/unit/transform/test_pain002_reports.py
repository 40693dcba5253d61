"""pain.002 status reports of versions .03 to .10 become the ledger's update of one payment order."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from esb.errors import ValidationError
from esb.transform.xmljson import xml_to_json

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "pain002"
SWISS = ROOT.parent / "shared" / "testdata" / "iso20022" / "pain002"
# as routes/pain002-to-payment-status.yaml parses the report
FORCE_LIST = ["OrgnlPmtInfAndSts", "TxInfAndSts", "StsRsnInf", "AddtlInf", "NbOfTxsPerSts", "ChrgsInf"]


def _load():
    spec = importlib.util.spec_from_file_location("pain002", ROOT / "transformers" / "functions" / "pain002.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pain002 = _load()


def update(xml: bytes | str) -> dict:
    return pain002.order_update(xml_to_json(xml, force_list=FORCE_LIST), {})


def sample(name: str) -> dict:
    return update((DATA / name).read_bytes())


def report(tx_status: str, version: str = "10") -> str:
    return f"""<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.{version}"><CstmrPmtStsRpt>
      <GrpHdr><MsgId>M-1</MsgId><CreDtTm>2024-06-04T10:00:00</CreDtTm></GrpHdr>
      <OrgnlGrpInfAndSts><OrgnlMsgId>ESB-PO-1</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.03</OrgnlMsgNmId></OrgnlGrpInfAndSts>
      <OrgnlPmtInfAndSts><OrgnlPmtInfId>PO-1</OrgnlPmtInfId>
        <TxInfAndSts><OrgnlEndToEndId>E-1</OrgnlEndToEndId><TxSts>{tx_status}</TxSts></TxInfAndSts>
      </OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>"""


def test_a_03_report_with_one_transaction_rejected_leaves_the_order_partially_accepted():
    got = sample("pain.002.001.03-one-rejected.xml")
    assert (got["order_id"], got["status"], got["status_code"]) == ("PO-20240603-0050", "partially_accepted", "PART")
    assert got["rejected_transactions"] == [
        {"end_to_end_id": "INV-2024-0602", "reason_code": "AC01", "reason": "IBAN check digits wrong"}]
    assert got["payee_checks"] == []


def test_a_05_report_accepted_with_change_gives_the_proprietary_reason_and_its_text():
    got = sample("pain.002.001.05-accepted-with-change.xml")
    assert (got["status"], got["status_code"], got["reason_code"]) == ("accepted", "ACWC", "DATE")
    assert got["reason"] == "Requested execution date is a bank holiday; executed on 2024-06-06"
    assert got["status_meaning"].startswith("AcceptedWithChange: ")


def test_a_07_report_with_one_payment_settled_and_one_pending_keeps_the_order_pending():
    got = sample("pain.002.001.07-one-pending.xml")
    assert (got["order_id"], got["status"], got["status_code"]) == ("PO-20240605-0070", "pending", "PDNG")


def test_a_08_report_of_a_cancelled_payment_marks_the_order_cancelled_with_the_reason():
    got = sample("pain.002.001.08-cancelled.xml")
    assert (got["status"], got["status_code"], got["reason_code"]) == ("cancelled", "CANC", "CUST")
    assert got["reason"] == "Cancelled by the ordering customer"
    assert got["rejected_transactions"] == []


def test_a_09_report_with_a_blocked_payment_keeps_the_order_pending_and_says_blocked():
    got = sample("pain.002.001.09-blocked.xml")
    assert (got["order_id"], got["status"], got["status_code"]) == ("PO-20240607-0090", "pending", "BLCK")
    assert got["status_meaning"].startswith("Blocked: ")


def test_a_10_verification_of_payee_report_lists_the_close_match_with_the_holders_name_and_the_mismatch():
    got = sample("pain.002.001.10-vop-mismatch.xml")
    assert (got["order_id"], got["status"], got["status_code"]) == ("PO-20240603-0042", "pending", "RVCM")
    assert got["reason"] == ("RVMC Der Name weicht vom Kontoinhaber ab; bitte pruefen und freigeben. "
                             "RVNM Der Name stimmt nicht mit dem Kontoinhaber ueberein.")
    assert got["rejected_transactions"] == []
    assert got["payee_checks"] == [
        {"end_to_end_id": "INV-88213", "code": "RVMC", "meaning": pain002.STATUS["RVMC"].meaning,
         "creditor_account": "NL91ABNA0417164300", "name_sent": "Van Dijk Verpakkingen B.V.",
         "name_on_account": "Van Dijk Verpakkingen Rotterdam B.V.", "note": None},
        {"end_to_end_id": "RE-2024-1177", "code": "RVNM", "meaning": pain002.STATUS["RVNM"].meaning,
         "creditor_account": "DE75512108001245126199", "name_sent": "Messebau Schmidt GmbH",
         "name_on_account": None, "note": None},
    ]


def test_a_payee_check_that_was_not_possible_is_listed_with_the_banks_note():
    xml = report("RVNA").replace("<TxSts>RVNA</TxSts>", "<TxSts>RVNA</TxSts><StsRsnInf><AddtlInf>"
                                 "Payee bank does not take part in VOP</AddtlInf></StsRsnInf>")
    got = update(xml)
    assert got["status"] == "pending"
    assert [(c["code"], c["note"]) for c in got["payee_checks"]] == [("RVNA", "Payee bank does not take part in VOP")]


def test_a_group_no_match_without_transactions_is_a_payee_check_on_the_whole_order():
    transaction = "<TxInfAndSts><OrgnlEndToEndId>E-1</OrgnlEndToEndId><TxSts>RVNM</TxSts></TxInfAndSts>"
    xml = report("RVNM").replace(transaction, "")
    xml = xml.replace("</OrgnlMsgNmId>", "</OrgnlMsgNmId><GrpSts>RVNM</GrpSts>")
    got = update(xml)
    assert [(c["end_to_end_id"], c["code"]) for c in got["payee_checks"]] == [(None, "RVNM")]


def test_a_full_match_is_no_payee_check():
    got = update(report("RCVC"))
    assert (got["status"], got["status_code"], got["payee_checks"]) == ("pending", "RCVC", [])


@pytest.mark.parametrize("code, status", [("ACCC", "accepted"), ("ACPD", "accepted"), ("ACIS", "accepted"),
                                          ("ACFC", "accepted"), ("ACWP", "accepted"), ("ACCR", "cancelled"),
                                          ("PRES", "pending"), ("RCVD", "pending"), ("PATC", "partially_accepted")])
def test_every_iso_transaction_status_code_has_its_ledger_status(code, status):
    assert update(report(code))["status"] == status


def test_an_unknown_status_code_is_refused_with_where_it_is_and_every_code_esb_knows():
    with pytest.raises(ValidationError) as caught:
        update(report("XXXX"))
    message = str(caught.value)
    assert message.startswith("TxInfAndSts/TxSts of EndToEndId 'E-1' 'XXXX' is not a payment status code esb knows; "
                              "it knows the ISO 20022 codes ACCC, ACCP, ACCR, ")
    assert message.endswith("and the verification of payee codes RCVC, RVCM, RVMC, RVNA, RVNM")


@pytest.mark.parametrize("name, status, code", [
    ("pain002-epo_p_ch2909000000250094239_1109800799_0_2018032612092784.xml", "rejected", "RJCT"),
    ("pain002-chdd-cor1_p_ch2909000000250094239_1110097483_0_2018031317221082.xml", "accepted", "ACCP")])
def test_the_real_swiss_reports_keep_their_status(name, status, code):
    got = update((SWISS / name).read_bytes())
    assert (got["status"], got["status_code"], got["payee_checks"]) == (status, code, [])
