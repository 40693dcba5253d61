"""The statements the demo builds are what a bank sends: valid MT940 and camt.053.001.02 that the
routes' own parser and reconciliation accept, or (on purpose) refuse."""

from decimal import Decimal

import pytest

from esb.demo import samples
from esb.errors import BusinessError
from esb.steps.function import load_module
from esb.transform.safexml import load_xsd, parse_xml, validate_xsd
from esb.transform.xmljson import xml_to_json

CAMT_LISTS = ["Stmt", "Bal", "Ntry", "NtryDtls", "TxDtls"]  # as routes/camt053-to-ledger.yaml forces them
CAMT_ARGS = {"timezone": "Europe/Berlin", "fee_account": "6603"}  # as routes/camt053-to-ledger.yaml gives them


@pytest.fixture(scope="module")
def functions(project_root):
    folder = project_root / "transformers" / "functions"
    return load_module(folder / "mt940.py"), load_module(folder / "camt053.py")


@pytest.mark.parametrize("statement", [samples.CAMT053_STATEMENT, samples.UNRECONCILED_STATEMENT],
                         ids=["reconciles", "does-not-reconcile"])
def test_the_demo_camt053_statements_are_valid_against_the_iso_schema(testdata, statement):
    schema = load_xsd(testdata / "iso20022" / "camt053" / "camt.053.001.02.xsd")
    validate_xsd(schema, parse_xml(samples.camt053(statement)))


def test_the_demo_mt940_statement_is_read_with_every_entry_and_reconciles(functions):
    mt940, camt053 = functions
    stmt = samples.MT940_STATEMENT
    parsed = mt940.parse(samples.mt940(stmt), {})
    camt053.reconcile_statements(parsed, {})
    (read,) = parsed["statements"]
    assert (read["statement_id"], read["account"], read["currency"]) == (stmt.statement_id, stmt.account, "EUR")
    assert (read["opening"], read["closing"]) == (Decimal("18250.00"), Decimal("21764.60"))
    assert [(e["entry_ref"], e["amount"], e["description"]) for e in read["entries"]] == [
        (e.bank_ref, e.amount, e.text) for e in stmt.entries]


def test_the_demo_camt053_statement_gives_its_booked_entries_and_reconciles(functions):
    _, camt053 = functions
    stmt = samples.CAMT053_STATEMENT
    body = xml_to_json(samples.camt053(stmt), force_list=CAMT_LISTS)
    (read,) = camt053.reconcile_statements(camt053.entries(body, {}, **CAMT_ARGS), {})["statements"]
    assert (read["opening"], read["closing"]) == (stmt.opening, stmt.opening + Decimal("2107.10"))
    assert [(e["entry_ref"], e["amount"]) for e in read["entries"]] == [(e.bank_ref, e.amount) for e in stmt.entries]


def test_the_demo_statement_that_does_not_reconcile_is_refused_naming_it_and_the_difference(functions):
    _, camt053 = functions
    body = xml_to_json(samples.camt053(samples.UNRECONCILED_STATEMENT), force_list=CAMT_LISTS)
    with pytest.raises(BusinessError, match=r"statement DEMO-CAMT-1122 does not reconcile: .*\(difference 0\.05\)"):
        camt053.reconcile_statements(camt053.entries(body, {}, **CAMT_ARGS), {})


def test_a_debit_opening_balance_is_written_with_the_debit_mark_and_no_sign():
    stmt = samples.Statement("S-1", samples.ACCOUNT, "EUR", "2026-11-20", Decimal("-10.50"),
                             (samples.Entry("B1", Decimal("20.00"), "credit"),))
    text = samples.mt940(stmt).decode()
    assert ":60F:D261120EUR10,50\r\n" in text and ":62F:C261120EUR9,50\r\n" in text
    assert "<Amt Ccy=\"EUR\">10.50</Amt><CdtDbtInd>DBIT</CdtDbtInd>" in samples.camt053(stmt).decode()
