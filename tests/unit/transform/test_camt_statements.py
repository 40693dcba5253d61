"""camt.053 and camt.052 files of several banks and versions become the statement shape with stable,
unique identities, dates in the account's zone, charges as lines of their own, and reconcile by what
their balances cover (tests/data/camt/README.md says where each file comes from)."""

from decimal import Decimal
from pathlib import Path

import pytest

from esb.errors import BusinessError, TransformError, ValidationError
from esb.steps.function import load_module
from esb.transform.xmljson import xml_to_json

DATA = Path(__file__).resolve().parents[2] / "data" / "camt"
LISTS = ["Stmt", "Rpt", "Bal", "Ntry", "NtryDtls", "TxDtls"]   # as the two routes force them
ARGS = {"timezone": "Europe/Zurich", "fee_account": "6603"}
CAMT053_SAMPLES = sorted(p.name for p in DATA.glob("*.xml") if "052" not in p.name)
CAMT052_SAMPLES = sorted(p.name for p in DATA.glob("camt052*.xml"))
SHARED_SAMPLES = ["FI_camt_053_sample.xml.xml", "camt053.v2.all-balance-types.xml", "camt053.v2.five.decimals.xml",
                  "camt053.v2.minimal.xml", "camt053.v2.multi.statement.xml", "statement_1.xml"]


@pytest.fixture(scope="module")
def camt(project_root):
    return load_module(project_root / "transformers" / "functions" / "camt053.py")


def read(camt, xml, intraday=False, **args):
    body = xml_to_json(xml if isinstance(xml, (bytes, str)) else xml.read_bytes(), force_list=LISTS)
    return (camt.intraday_entries if intraday else camt.entries)(body, {}, **{**ARGS, **args})


def ids(shape):
    return [e["entry_id"] for s in shape["statements"] for e in s["entries"]]


def statement(entries="", balances=None, extra="", account="CH5604835012345678009"):
    balances = balances if balances is not None else (
        '<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="CHF">0</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        '<Dt><Dt>2024-06-03</Dt></Dt></Bal>')
    return f"""<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.04"><BkToCstmrStmt>
      <GrpHdr><MsgId>M1</MsgId><CreDtTm>2024-06-03T21:00:00+02:00</CreDtTm></GrpHdr>
      <Stmt><Id>S1</Id>{extra}<CreDtTm>2024-06-03T21:00:00+02:00</CreDtTm>
        <Acct><Id><IBAN>{account}</IBAN></Id><Ccy>CHF</Ccy></Acct>{balances}{entries}</Stmt>
    </BkToCstmrStmt></Document>"""


def entry(amount="10.00", ref=None, ntry_ref=None, booked="<Dt>2024-06-03</Dt>", extra=""):
    return (f"<Ntry>{f'<NtryRef>{ntry_ref}</NtryRef>' if ntry_ref else ''}<Amt Ccy=\"CHF\">{amount}</Amt>"
            f"<CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt>{booked}</BookgDt>"
            f"{f'<AcctSvcrRef>{ref}</AcctSvcrRef>' if ref else ''}{extra}</Ntry>")


# --- identity ------------------------------------------------------------------------------------

def test_four_entries_sharing_an_ntryref_get_four_entry_ids_from_their_own_acctsvcrref(camt):
    (stmt,) = read(camt, DATA / "ch-13-entries-shared-ntryref.camt053.xml")["statements"]
    shared = [e for e in stmt["entries"] if e["description"].startswith("Zahlung QR-Rechnung")]
    assert len(stmt["entries"]) == 13 and len(shared) == 4
    assert [e["entry_id"] for e in shared] == [
        "CH5604835012345678009:20240603000147110001", "CH5604835012345678009:20240603000347110003",
        "CH5604835012345678009:20240603000547110005", "CH5604835012345678009:20240603000947110009"]
    assert [e["entry_ref"] for e in shared] == [i.rpartition(":")[2] for i in (e["entry_id"] for e in shared)]
    assert stmt["statement_key"] == "CH5604835012345678009:153:2024-06-03"


@pytest.mark.parametrize("name", CAMT053_SAMPLES + CAMT052_SAMPLES)
def test_no_two_entries_of_a_sample_share_an_entry_id_and_a_resent_file_keeps_them(camt, name):
    intraday = "052" in name
    first = read(camt, DATA / name, intraday=intraday)
    again = read(camt, (DATA / name).read_bytes().replace(b"<MsgId>", b"<MsgId>RESENT-"), intraday=intraday)
    assert len(set(ids(first))) == len(ids(first))
    assert ids(again) == ids(first)
    assert [s["statement_key"] for s in again["statements"]] == [s["statement_key"] for s in first["statements"]]


@pytest.mark.parametrize("name", SHARED_SAMPLES)
def test_no_two_entries_of_a_shared_sample_share_an_entry_id(camt, testdata, name):
    found = ids(read(camt, testdata / "iso20022" / "camt053" / name))
    assert found and len(set(found)) == len(found)


def test_entries_without_an_acctsvcrref_of_their_own_are_identified_by_statement_and_position(camt):
    xml = statement(entry(ref="R-1") + entry(ref="R-1") + entry(ntry_ref="X") + entry(ref="R-2"),
                    extra="<ElctrncSeqNb>41</ElctrncSeqNb>")
    (stmt,) = read(camt, xml)["statements"]
    key = "CH5604835012345678009:41:2024-06-03"   # no closing balance: the date is CreDtTm's in Zurich
    assert stmt["statement_key"] == key
    assert ids(read(camt, xml)) == [f"{key}:1", f"{key}:2", f"{key}:3", "CH5604835012345678009:R-2"]
    assert [e["entry_ref"] for e in stmt["entries"]] == ["R-1", "R-1", "X", "R-2"]


def test_the_statement_number_is_the_electronic_sequence_else_the_legal_one_else_the_id(camt):
    def key(extra):
        return read(camt, statement(extra=extra))["statements"][0]["statement_key"]
    assert key("<ElctrncSeqNb>7</ElctrncSeqNb><LglSeqNb>3</LglSeqNb>") == "CH5604835012345678009:7:2024-06-03"
    assert key("<LglSeqNb>3</LglSeqNb>") == "CH5604835012345678009:3:2024-06-03"
    assert key("") == "CH5604835012345678009:S1:2024-06-03"


def test_a_camt052_entry_has_the_entry_id_the_days_camt053_gives_it_and_is_provisional(camt):
    report = read(camt, DATA / "camt052.v8.xml", intraday=True)
    (line,) = report["statements"][0]["entries"]
    day = statement(entry(ref="AAAASESS-FP-ACCR-01"), account="CH2801234000123456789")
    assert line["entry_id"] == ids(read(camt, day))[0] == "CH2801234000123456789:AAAASESS-FP-ACCR-01"
    assert line["provisional"] is True and "provisional" not in read(camt, day)["statements"][0]["entries"][0]


def test_a_camt052_report_sent_as_a_statement_is_refused_naming_what_it_is(camt):
    with pytest.raises(ValidationError, match=r"this is a camt\.052 report .* camt.052-to-ledger route"):
        read(camt, DATA / "camt052.v2.xml")


# --- dates in the account's zone -------------------------------------------------------------------

def test_a_utc_booking_time_at_month_end_is_the_first_of_the_month_in_zurich(camt):
    (stmt,) = read(camt, DATA / "month-end-utc-datetimes.camt053.xml")["statements"]
    assert [e["booking_date"] for e in stmt["entries"]] == ["2014-02-01"] * 3
    assert stmt["entries"][0]["value_date"] == "2014-02-01"
    assert stmt["closing_date"] == "2014-02-01" and stmt["statement_key"].endswith(":32:2014-02-01")
    (utc,) = read(camt, DATA / "month-end-utc-datetimes.camt053.xml", timezone="UTC")["statements"]
    assert [e["booking_date"] for e in utc["entries"]] == ["2014-01-31", "2014-02-01", "2014-02-01"]


def test_an_account_in_another_zone_takes_its_own_and_a_time_without_offset_is_local(camt):
    xml = statement(entry(ref="A", booked="<DtTm>2014-01-31T23:00:00.000Z</DtTm>")
                    + entry(ref="B", booked="<DtTm>2014-01-31T23:30:00</DtTm>"))
    shape = read(camt, xml, timezone="Europe/Zurich", account_timezones={"CH5604835012345678009": "America/New_York"})
    assert [e["booking_date"] for e in shape["statements"][0]["entries"]] == ["2014-01-31", "2014-01-31"]


def test_an_unknown_time_zone_is_refused_naming_it_and_the_nearest_one(camt):
    with pytest.raises(TransformError, match=r"the route's timezone 'Europe/Zurch' is not an IANA time zone name "
                                             r"such as Europe/Zurich. Did you mean 'Europe/Zurich'\?"):
        read(camt, statement(), timezone="Europe/Zurch")
    with pytest.raises(TransformError, match=r"account_timezones for CH56 'Mars/Olympus' is not an IANA time zone"):
        read(camt, statement(), account_timezones={"CH56": "Mars/Olympus"})


# --- reconciliation of value-dated entries (camt.053 and the MT940 shape) --------------------------

def test_entries_valued_after_the_closing_date_reconcile_with_the_forward_balances_and_are_marked(camt):
    shape = read(camt, DATA / "value-dated-fwav.camt053.xml")
    (stmt,) = camt.reconcile_statements(shape, {})["statements"]
    assert [(e["entry_id"].rpartition(":")[2], e.get("value_dated", False)) for e in stmt["entries"]] == [
        ("VD-0001", False), ("VD-0002", False), ("VD-0003", True), ("VD-0004", True)]


def test_a_forward_balance_that_does_not_cover_the_value_dated_entries_is_refused_with_the_difference(camt):
    xml = (DATA / "value-dated-fwav.camt053.xml").read_text().replace(">11220.00<", ">11220.10<")
    with pytest.raises(BusinessError, match=r"does not reconcile: without the entries valued after 2024-06-03 it "
                                            r"does, but closing 12120.00 \+ those valued by 2024-06-05 = 11220.00 "
                                            r"!= forward available 11220.10 EUR on 2024-06-05 \(difference 0.10\)"):
        camt.reconcile_statements(read(camt, xml), {})


def test_a_statement_still_off_without_its_value_dated_entries_is_refused_with_both_differences(camt):
    xml = (DATA / "value-dated-fwav.camt053.xml").read_text().replace(">12120.00<", ">12120.01<", 1)
    with pytest.raises(BusinessError, match=r"opening 10000.00 \+ entries 1220.00 != closing 12120.01 EUR "
                                            r"\(difference 900.01\); without the 2 entries valued after "
                                            r"2024-06-03 it is still off by 0.01"):
        camt.reconcile_statements(read(camt, xml), {})


def test_the_mt940_shape_gets_the_same_value_dated_reconciliation(camt):
    """What mt940.py gives for :62F: 100 on 2024-06-03 and :65: 60 on 2024-06-04, no charges."""
    shape = {"message_id": "X", "statements": [{
        "statement_id": "STARTUMS", "currency": "EUR", "opening": Decimal("50"), "closing": Decimal("100"),
        "closing_date": "2024-06-03", "forward_available": [{"date": "2024-06-04", "amount": Decimal("60")}],
        "entries": [{"entry_id": "k:1", "amount": Decimal("50"), "currency": "EUR", "value_date": "2024-06-03"},
                    {"entry_id": "k:2", "amount": Decimal("-40"), "currency": "EUR", "value_date": "2024-06-04"}]}]}
    (stmt,) = camt.reconcile_statements(shape, {})["statements"]
    assert [e.get("value_dated") for e in stmt["entries"]] == [None, True]
    shape["statements"][0]["forward_available"][0]["amount"] = Decimal("61")
    with pytest.raises(BusinessError, match=r"= 60 != forward available 61 EUR on 2024-06-04 \(difference 1\)"):
        camt.reconcile_statements(shape, {})


def test_a_statement_without_value_dated_entries_that_does_not_reconcile_says_only_its_difference(camt, testdata):
    body = read(camt, testdata / "iso20022" / "camt053" / "camt053.v2.all-balance-types.xml")
    with pytest.raises(BusinessError,
                       match=r"opening 1.01 \+ entries 8.850 != closing 4.04 EUR \(difference -5.820\)$"):
        camt.reconcile_statements(body, {})


# --- charges ---------------------------------------------------------------------------------------

def test_charges_included_in_an_entry_are_lines_to_the_fee_account_and_the_entry_is_gross(camt):
    (stmt,) = read(camt, DATA / "charges-rcrd.camt053.xml", fee_account="6603")["statements"]
    got = [(e["amount"], [(c["entry_id"].partition(":")[2], c["account"], c["amount"], c["type"])
                          for c in e["charges"]]) for e in stmt["entries"]]
    assert got == [
        (Decimal("1000.00"), [("CHG-0001:charge:1", "6603", Decimal("-5.00"), "COMM")]),
        (Decimal("-2000.00"), [("CHG-0002:charge:1", "6603", Decimal("-10.00"), "SWIFT"),
                               ("CHG-0002:charge:2", "6603", Decimal("-5.00"), "COMM")]),
        (Decimal("-800.00"), []),         # ChrgInclInd false: its 7.50 is the next entry, posted once
        (Decimal("-7.50"), [])]
    camt.reconcile_statements({"statements": [stmt]}, {})


def test_the_flat_charges_of_camt053_v2_are_lines_of_their_own_too(camt):
    (stmt,) = read(camt, DATA / "charges-flat.camt053.xml", fee_account="4730")["statements"]
    first = stmt["entries"][0]
    assert (first["amount"], first["charges"]) == (Decimal("500.00"), [
        {"entry_id": "DE89370400440532013000:FLAT-0001:charge:1", "account": "4730", "amount": Decimal("-2.00"),
         "currency": "EUR", "type": "COMM"}])
    camt.reconcile_statements({"statements": [stmt]}, {})


def test_a_charge_included_in_another_currency_is_refused_naming_the_entry(camt):
    charge = '<Chrgs><Rcrd><Amt Ccy="EUR">1.00</Amt><CdtDbtInd>DBIT</CdtDbtInd></Rcrd></Chrgs>'
    with pytest.raises(ValidationError, match=r"charge 1 of entry 1 of statement S1 is in EUR, but it is included "
                                              r"in an amount in CHF"):
        read(camt, statement(entry(ref="R", extra=charge)))


def test_zero_charges_and_charges_not_included_are_not_posted(camt):
    (report,) = read(camt, DATA / "camt052.v6.Amt-zero.xml", intraday=True)["statements"]
    assert report["entries"] == []     # its only entry is pending
    charges = ('<Chrgs><Rcrd><Amt Ccy="CHF">0</Amt><CdtDbtInd>DBIT</CdtDbtInd></Rcrd>'
               '<Rcrd><Amt Ccy="CHF">3.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><ChrgInclInd>false</ChrgInclInd></Rcrd>'
               '</Chrgs>')
    (line,) = read(camt, statement(entry(ref="R", extra=charges)))["statements"][0]["entries"]
    assert (line["amount"], line["charges"]) == (Decimal("10.00"), [])


# --- the currency message, and the shared samples as documented -------------------------------------

def test_a_closing_balance_only_in_sek_is_refused_saying_which_currency_it_is_in(camt, testdata):
    body = read(camt, testdata / "iso20022" / "camt053" / "camt053.v2.minimal.xml")
    with pytest.raises(BusinessError, match=r"no booked closing balance in EUR; it has one only in SEK$"):
        camt.reconcile_statements(body, {})


@pytest.mark.parametrize("name, outcome", [
    ("FI_camt_053_sample.xml.xml", None),
    ("camt053.v2.multi.statement.xml", None),
    ("camt053.v2.five.decimals.xml", "opening 18.150 + entries 8.850 != closing 27.050"),
    ("camt053.v2.minimal.xml", "no booked closing balance in EUR"),
    ("statement_1.xml", "no booked opening balance in EUR"),
])
def test_the_shared_samples_reconcile_or_not_as_routes_readme_says(camt, testdata, name, outcome):
    body = read(camt, testdata / "iso20022" / "camt053" / name)
    if outcome is None:
        camt.reconcile_statements(body, {})
    else:
        with pytest.raises(BusinessError, match=outcome.replace("+", r"\+")):
            camt.reconcile_statements(body, {})


@pytest.mark.parametrize("amount", ["１２.50", "NaN", "1E+3", "12,50", "-5.00", "Infinity"])
def test_only_an_ascii_iso_amount_is_an_amount(camt, amount):
    with pytest.raises(ValidationError, match="has an amount that is not a number"):
        read(camt, statement(entry(amount=amount, ref="R1")))
