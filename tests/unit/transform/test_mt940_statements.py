"""MT940 statements keep each entry's identity and day (issue 10, points 1, 3 and 4, the MT940 side).

Bank files are read in place from ../shared/testdata/mt940 or from tests/data/mt940 (see its README.md
for where each comes from). `transformers/functions/mt940.py` is loaded by path, as a route loads it.
"""

from decimal import Decimal
from pathlib import Path

import pytest

from esb.errors import ValidationError
from esb.steps.function import load_module

DATA = Path(__file__).resolve().parents[2] / "data" / "mt940"
SPARKASSE = DATA / "written" / "sparkasse-four-statements-ctrl-z.sta"


@pytest.fixture(scope="module")
def functions(project_root):
    folder = project_root / "transformers" / "functions"
    return load_module(folder / "mt940.py"), load_module(folder / "camt053.py")


@pytest.fixture(scope="module")
def read(functions, testdata):
    """The parsed statement shape of a file: a path in tests/data/mt940, else in ../shared/testdata/mt940."""
    mt940, _ = functions

    def read(name: str) -> dict:
        path = DATA / name if (DATA / name).is_file() else testdata / "mt940" / name
        return mt940.parse(path.read_bytes(), {})
    return read


def ids(parsed: dict) -> list[str]:
    return [entry["entry_id"] for stmt in parsed["statements"] for entry in stmt["entries"]]


# --- point 1: identity -----------------------------------------------------------------------------

def test_files_from_several_banks_that_all_start_startums_get_their_own_message_statement_and_entry_ids(read):
    files = ["self-provided/whitespace.sta",                   # German (Sparkasse GV codes), :28C:0
             "written/sparkasse-four-statements-ctrl-z.sta",  # German Sparkasse, four statements, :28C:0
             "sberbank/171011_01234945.sta",                  # Sberbank Hungary
             "self-provided/raiffeisen-cmi.sta"]              # Raiffeisen Hungary
    parsed = [read(name) for name in files]
    assert {stmt["statement_id"] for p in parsed for stmt in p["statements"]} == {"STARTUMS"}
    assert [p["message_id"] for p in parsed] == [
        "12345678/1020304050:0:2017-09-14", "37050198/1234567890:0:2024-03-04",
        "1966315302010001:00046:2017-10-11", "UBRTHUHB/123456789150ABCDEF002/HUF:0072:2018-04-17"]
    keys = [stmt["statement_key"] for p in parsed for stmt in p["statements"]]
    every_id = [entry_id for p in parsed for entry_id in ids(p)]
    assert len(keys) == len(set(keys)) == 7
    assert len(every_id) == len(set(every_id)) == 1 + 6 + 3 + 7


def test_a_sparkasse_file_of_four_startums_statements_split_by_ctrl_z_posts_four_statements_and_six_distinct_entries(
        functions, read):
    _, camt053 = functions
    parsed = read("written/sparkasse-four-statements-ctrl-z.sta")
    camt053.reconcile_statements(parsed, {})
    assert [stmt["statement_key"] for stmt in parsed["statements"]] == [
        f"37050198/1234567890:0:2024-03-0{day}" for day in (4, 5, 6, 7)]
    assert ids(parsed) == ["37050198/1234567890:0:2024-03-04:1", "37050198/1234567890:0:2024-03-04:2",
                           "37050198/1234567890:0:2024-03-05:1",
                           "37050198/1234567890:0:2024-03-06:1", "37050198/1234567890:0:2024-03-06:2",
                           "37050198/1234567890:0:2024-03-07:1"]
    entries = [e for stmt in parsed["statements"] for e in stmt["entries"]]
    assert [(e["entry_ref"], e["amount"]) for e in entries] == [
        (None, Decimal("-45.90")), (None, Decimal("1200.00")), (None, Decimal("-120.00")),
        (None, Decimal("-12.99")), (None, Decimal("-30.00")), (None, Decimal("250.00"))]


def test_the_same_statement_sent_again_alone_or_in_the_same_file_gets_the_same_ids(functions, read):
    mt940, _ = functions
    whole = read("written/sparkasse-four-statements-ctrl-z.sta")
    assert read("written/sparkasse-four-statements-ctrl-z.sta") == whole
    third_alone = mt940.parse(SPARKASSE.read_bytes().split(b"\x1a")[2], {})   # the 2024-03-06 statement as its own file
    assert third_alone["message_id"] == whole["statements"][2]["statement_key"]
    assert third_alone["statements"] == [whole["statements"][2]]


def test_a_bank_name_as_20_and_repeated_bank_references_never_make_two_entries_one(read):
    abn = read("jejik/abnamro.sta")             # both statements are ":20:ABN AMRO BANK NV"
    assert [s["statement_id"] for s in abn["statements"]] == ["ABN AMRO BANK NV"] * 2
    assert [s["statement_key"] for s in abn["statements"]] == ["517852257:19321/1:2011-05-23",
                                                               "517852257:19322/1:2011-05-24"]
    cmxl = read("cmxl/mt940.sta")               # the bank reference 55555 twice in one statement
    (first, second) = cmxl["statements"][1]["entries"]
    assert (first["entry_ref"], second["entry_ref"]) == ("55555", "55555")
    assert (first["entry_id"], second["entry_id"]) == ("10020030/1234567:5/1:2002-11-30:1",
                                                       "10020030/1234567:5/1:2002-11-30:2")
    sepa = read("betterplace/sepa_mt9401.sta")  # 26 German statements, all :28C:00004/00001, refs repeat
    refs = [e["entry_ref"] for s in sepa["statements"] for e in s["entries"] if e["entry_ref"]]
    assert len(refs) > len(set(refs))
    assert len(sepa["statements"]) == 26 and len(ids(sepa)) == len(set(ids(sepa))) == 97


def test_a_file_with_one_statement_number_and_closing_date_twice_for_one_account_is_refused(read):
    # raphaelm.sta: two pages both numbered 1/1 on 2002-03-15; their entries would share ids
    with pytest.raises(ValidationError, match=r"statement STARTUMS \(line 28\) has the account, number and closing "
                                              r"date of the statement on line 1 \(1222333444:1/1:2002-03-15\)"):
        read("self-provided/raphaelm.sta")


# --- point 3: real-world variants parse, amounts stay strict, errors name their line ----------------

@pytest.mark.parametrize(("name", "key"), [
    ("written/statement-number-blank-slash.sta", "NL20INGB0001234567:1:2024-02-12"),       # ":28C: /1"
    ("written/statement-number-wrapped.sta", "DE44500105175407324931:00044/00001:2024-02-13"),  # "00044/" + "00001"
])
def test_a_statement_number_with_a_blank_a_leading_slash_or_a_line_break_is_read_and_reconciles(
        functions, read, name, key):
    _, camt053 = functions
    parsed = read(name)
    camt053.reconcile_statements(parsed, {})
    assert parsed["message_id"] == parsed["statements"][0]["statement_key"] == key


def test_a_statement_number_on_the_line_after_its_tag_is_read(functions):
    mt940, _ = functions
    text = ":20:X\n:25:DE44500105175407324931\n:28C:\n7/2\n:60F:C240212EUR1,00\n:62F:C240213EUR1,00\n-\n"
    assert mt940.parse(text, {})["message_id"] == "DE44500105175407324931:7/2:2024-02-13"


def test_the_asn_bank_file_with_an_iban_of_18_characters_as_61_reference_is_read_and_reconciles(functions, read):
    _, camt053 = functions
    parsed = read("ASNB/mt940.txt")
    camt053.reconcile_statements(parsed, {})
    assert len(parsed["statements"]) == 31 and len(set(ids(parsed))) == 8
    first = parsed["statements"][0]
    assert first["statement_key"] == "NL81ASNB9999999999:1/1:2020-01-01"
    assert first["entries"] == [{
        "entry_id": "NL81ASNB9999999999:1/1:2020-01-01:1", "entry_ref": None,
        "booking_date": "2020-01-01", "value_date": "2020-01-01", "amount": Decimal("-65.00"), "currency": "EUR",
        "description": "NL47INGB9999999999 hr gjlm paulissen Betaling sieraden"}]


def test_an_amount_written_with_a_decimal_point_is_still_refused_with_the_line_of_its_61(functions):
    mt940, _ = functions
    lines = [":20:0000000000", ":25:NL81ASNB9999999999", ":28C:1/1", ":60F:C200101EUR444,29",
             ":61:2001010101D65,00NOVBNL47INGB9999999999", "hr gjlm paulissen", ":62F:C200101EUR379,29", "-",
             ":20:0000000000", ":25:NL81ASNB9999999999", ":28C:2/1", ":60F:C200102EUR379,29",
             ":61:2001020102D65.00NOVBNL47INGB9999999999", "hr gjlm paulissen", ":62F:C200102EUR314,29", "-"]
    with pytest.raises(ValidationError, match=r"statement 0000000000: :61: on line 13 is not valid MT940"):
        mt940.parse("\r\n".join(lines) + "\r\n", {})


def test_a_field_repeated_by_a_broken_continuation_names_the_line_where_it_repeats(read):
    with pytest.raises(ValidationError, match=r"statement T089414086000001 \(line 1\) has :25: more than once "
                                              r"\(again on line 6\)"):
        read("betterplace/sepa_snippet_broken.sta")


# --- point 4: the days an entry and a statement's balances cover ------------------------------------

def test_an_entry_keeps_its_value_date_beside_its_booking_date_and_the_statement_its_forward_balances(read):
    (stmt,) = read("written/value-dated-tomorrow.sta")["statements"]
    assert (stmt["closing"], stmt["closing_date"]) == (Decimal("1100.00"), "2024-01-31")
    assert stmt["forward_available"] == [{"date": "2024-02-01", "amount": Decimal("850.00")},
                                         {"date": "2024-02-02", "amount": Decimal("850.00")}]
    assert [(e["entry_ref"], e["booking_date"], e["value_date"], e["amount"]) for e in stmt["entries"]] == [
        ("B4A31001", "2024-01-31", "2024-01-31", Decimal("100.00")),
        ("B4A31002", "2024-01-31", "2024-02-01", Decimal("-250.00"))]


def test_every_65_line_is_kept_signed_not_only_the_last(read):
    (stmt,) = read("self-provided/raiffeisen-cmi.sta")["statements"]
    assert stmt["forward_available"] == [{"date": f"2018-04-{day}", "amount": Decimal("25281687.60")}
                                         for day in (18, 19, 20)]
    (debit,) = read("sberbank/171011_01234945.sta")["statements"]
    assert debit["forward_available"] == []


@pytest.mark.parametrize("digits", ["１２,00", "١٢,00"])
def test_a_balance_or_entry_with_digits_that_are_not_ascii_is_refused_naming_its_line(functions, digits):
    mt940, _ = functions
    text = (":20:X\n:25:NL91ABNA0417164300\n:28C:1/1\n:60F:C240130EUR1000,00\n"
            f":61:2401310131C{digits}NTRFNONREF\n:62F:C240131EUR1012,00\n")
    with pytest.raises(ValidationError, match=r"line 5 \(:61:\) has a digit that is not ASCII"):
        mt940.parse(text, {})
