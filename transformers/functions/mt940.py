"""SWIFT MT940 customer statements, as text: parse them into the statement shape of camt053.entries.

The text is read by the `mt-940` library (import `mt940`), which gives each amount as a signed
Decimal made from its text (`mt940.models.Amount`): a float never appears, and `_decimal`
refuses one if a later release ever gave it. The result is the bank-neutral shape that
`camt053.py:reconcile_statements` checks and the ledger's POST /entries takes (the contract is
written out in routes/README.md):

    {message_id, statements: [{statement_id, statement_key, account, currency, opening, closing,
                               closing_date, forward_available: [{date, amount}],
                               entries: [{entry_id, entry_ref, booking_date, value_date, amount,
                                          currency, description}]}]}

Each `:20:` block is one statement. `:20:` is only displayed (`statement_id`): banks write the same
one in every file (German banks `STARTUMS`, ABN AMRO its own name), so it identifies nothing. A
statement's identity is `statement_key` = "<account :25:>:<number :28C:>:<closing date :62F:>", the
number as written with blanks and a leading "/" removed; an entry's is `entry_id` =
"<statement_key>:<n>", n its place among the statement's :61: lines, as bank references repeat
(`entry_ref`, the reference after `//`, display only). MT940 has no file id: `message_id` is the
first statement's key. A file sent again gives the same ids; two different statements never share
one, and a file that holds one statement twice is refused, as its entries could not be told apart.

Opening and closing are the booked balances :60F:/:60M: and :62F:/:62M: (M for a statement
continued on another page); `closing_date` is the closing balance's date and `forward_available`
the :65: lines, signed. Every :61: line is a booked entry, signed by its mark: C and RD (reversal of
a debit) positive, D and RC negative. Its `booking_date` is the entry date of :61: (else the value
date), its `value_date` the value date.

Variants of real banks that are read: a Ctrl-Z (0x1A, DOS end of file, left by concatenating files)
at the start or end of a line; `:28C:` with blanks, a line break or a leading "/" (`:28C: /1`); a
:61: reference of up to 34 characters before `//` (ASN Bank writes the counterparty's IBAN there,
MT940 allows 16). Dates, marks and amounts are read by the library's own patterns, and a :61: amount
must end where its transaction type begins (so `65.00` is refused, not read as 65).

Refused with a ValidationError, naming the statement and the line: text with no :20: block, a field
the library cannot read, a statement that repeats a once-only field (a broken file, whose later
lines would overwrite the first), one without an account, number, opening or closing balance, or
fewer entries read than :61: lines, and an MT942 interim report (:34F:/:13D:): its entries come
again in the day's MT940, so posting them would post twice. Whether the balances add up is
`reconcile_statements`' business, not parsing's.
"""

from __future__ import annotations

import io
import logging
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import mt940

from esb.errors import TransformError, ValidationError

# Explicit, not Options.all(): a later release may add switches that change what is posted.
OPTIONS = mt940.Options(reversal_sign=True, case_insensitive_marks=True, strip_bom=True, unbounded_details=True,
                        merge_keeps_values=True, applicant_iban=True, gvc_leading_text=True)
# The library splits a file the same way (mt940.parse_statements): each :20: starts a statement.
STATEMENT_START = re.compile(r"(?m)^(?=:20:)")
AMOUNT_FIELD = re.compile(r":(60[FM]|61|62[FM]|64|65):")  # the lines that carry money
TAG = re.compile(r"(?m)^:\n?(\d{2}[A-Z]?|NS):")
# Ctrl-Z, the DOS end-of-file byte: `copy /a a.sta+b.sta` leaves one where each file ended. Removed
# only at the start or end of a line, so no line moves and one inside a field still breaks it.
DOS_EOF = re.compile(r"(?m)^\x1a+|\x1a+(?=\r?$)")
ONCE = {"20": ":20:", "25": ":25:", "28": ":28:/:28C:", "28C": ":28:/:28C:", "60F": ":60F:/:60M:", "60M": ":60F:/:60M:",
        "62F": ":62F:/:62M:", "62M": ":62F:/:62M:"}
REQUIRED = {":25:": "account", ":28:/:28C:": "statement number", ":60F:/:60M:": "opening balance",
            ":62F:/:62M:": "closing balance"}
MT942_TAGS = {"34F", "13D"}
NO_REFERENCE = "NONREF"

# The library logs a line it cannot read, statement text included, at ERROR: a body never goes to the logs.
logging.getLogger("mt940").setLevel(logging.CRITICAL)


class StatementNumber(mt940.tags.StatementNumber):
    """:28:/:28C: as banks write it: `1/1`, `0`, also ` /1` or a value broken over two lines."""

    pattern = r"/?\s*(?P<statement_number>\d{1,5})(?:\s*/?\s*(?P<sequence_number>\d{1,5}))?\s*$"


def _changed(pattern: str, changes: dict[str, str]) -> str:
    """The library's pattern with these parts replaced; an ImportError if a release rewrote one of them."""
    for old, new in changes.items():
        if old not in pattern:
            raise ImportError(f"the mt940 library's pattern no longer has {old!r}: transformers/functions/mt940.py "
                              "must be updated")
        pattern = pattern.replace(old, new)
    return pattern


class Statement(mt940.tags.Statement):
    """:61: as the library reads it, with two changes. The reference before `//` may have 34 characters
    (ASN Bank writes the counterparty's IBAN there; MT940 allows 16). The amount must end where the
    transaction type (a letter) or the line begins, as MT940 says: `65.00NTRF` is refused, not read as 65."""

    pattern = _changed(mt940.tags.Statement.pattern, {
        r"((?!//)[^\n]){0,16})": r"((?!//)[^\n]){0,34})",
        r"(?P<amount>[\d,]{1,15})": r"(?P<amount>[\d,]{1,15})(?=[A-Z]|\n|$)"})


# The class names keep the library's slugs, so its processors still apply to them.
TAGS = {28: StatementNumber(), 61: Statement()}


def parse(body: str | bytes, headers: dict) -> dict:
    """The statements of an MT940 file as {message_id, statements}; a ValidationError if it is not one."""
    text = DOS_EOF.sub("", _decoded(body))
    _ascii_amounts(text)
    starts = [match.start() for match in STATEMENT_START.finditer(text)]
    if not starts:
        raise ValidationError("not an MT940 statement: no line starts with :20: (the statement's reference)")
    lines = [text.count("\n", 0, start) + 1 for start in starts]
    found = [_statement(text[start:end], line)
             for start, end, line in zip(starts, [*starts[1:], len(text)], lines, strict=True)]
    first: dict[str, int] = {}
    for stmt, line in zip(found, lines, strict=True):
        key = stmt["statement_key"]
        if key in first:
            raise ValidationError(f"statement {stmt['statement_id']} (line {line}) has the account, number and "
                                  f"closing date of the statement on line {first[key]} ({key}): the file holds "
                                  "one statement twice, or two whose entries could not be told apart")
        first[key] = line
    return {"message_id": found[0]["statement_key"], "statements": found}


def _ascii_amounts(text: str) -> None:
    """Only ASCII digits are amounts: the library's patterns (\\d) and Decimal would read a fullwidth
    or Arabic-Indic digit in a balance or entry line as a number."""
    for n, line in enumerate(text.split("\n"), start=1):
        field = AMOUNT_FIELD.match(line)
        if field and any(c.isdigit() and not c.isascii() for c in line):
            raise ValidationError(f"line {n} ({field.group(0)}) has a digit that is not ASCII; only ASCII digits "
                                  "are amounts, so the file cannot be read")


def _decoded(body: Any) -> str:
    """The file as text: UTF-8, else ISO 8859-1 (banks differ; only descriptions can suffer)."""
    if isinstance(body, str):
        return body
    if not isinstance(body, (bytes, bytearray)):
        raise ValidationError(f"an MT940 statement is text, not {type(body).__name__}")
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(body).decode("latin-1")


def _statement(block: str, line: int) -> dict:
    fields = _fields(block, line)
    reference = block[4:].split("\n", 1)[0].strip() or f"(without :20:, line {line})"
    where = f"statement {reference} (line {line})"
    _check_fields(fields, where)
    forward: list[Any] = []
    transactions = _parsed(block, forward, reference, line)
    data = transactions.data
    opening = data.get("final_opening_balance") or data.get("intermediate_opening_balance")
    closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
    opening_amount, currency = _balance(opening, f"the opening balance of {where}")
    closing_amount, _ = _balance(closing, f"the closing balance of {where}")
    lines = [tag for tag, _, _ in fields].count("61")
    if len(transactions) != lines:
        raise ValidationError(f"{where} has {lines} :61: lines, but only {len(transactions)} could be read as entries")
    account = _clean(data.get("account_identification"))
    if not account:
        raise ValidationError(f"{where} has an empty account (:25:), so its entries would have no identity")
    number = next(re.sub(r"\s", "", value).removeprefix("/") for tag, value, _ in fields if tag.startswith("28"))
    key = f"{account}:{number}:{closing.date.isoformat()}"
    return {"statement_id": reference, "statement_key": key, "account": account, "currency": currency,
            "opening": opening_amount, "closing": closing_amount, "closing_date": closing.date.isoformat(),
            "forward_available": [{"date": b.date.isoformat(), "amount": _balance(b, f"a :65: balance of {where}")[0]}
                                  for b in forward],
            "entries": [_entry(t.data, key, n, where) for n, t in enumerate(transactions, start=1)]}


def _fields(block: str, line: int) -> list[tuple[str, str, int]]:
    """Each field of the block as (tag, text as written, line number in the file)."""
    found = list(TAG.finditer(block))
    ends = [match.start() for match in found[1:]] + [len(block)]
    return [(match.group(1), block[match.end():end], line + block.count("\n", 0, match.start()))
            for match, end in zip(found, ends, strict=True)]


def _check_fields(fields: list[tuple[str, str, int]], where: str) -> None:
    if MT942_TAGS & {tag for tag, _, _ in fields}:
        raise ValidationError(f"{where} is an MT942 interim report (:34F:/:13D:), not an MT940 statement: "
                              "interim entries come again in the day's MT940, so they are not posted")
    seen: dict[str, int] = {}
    for tag, _, at in fields:
        if tag in ONCE and ONCE[tag] in seen:
            raise ValidationError(f"{where} has {ONCE[tag]} more than once (again on line {at}): the file is "
                                  "broken (a continuation line that starts with a tag?)")
        if tag in ONCE:
            seen[ONCE[tag]] = at
    for name, what in REQUIRED.items():
        if name not in seen:
            raise ValidationError(f"{where} has no {what} ({name})")


def _parsed(block: str, forward: list, reference: str, line: int) -> mt940.models.Transactions:
    """The library's reading of one statement; each :65: balance is added to `forward` (it keeps the last)."""
    def keep(transactions: Any, tag: Any, tag_dict: dict, result: dict) -> dict:
        forward.append(result[tag.slug])
        return result
    try:
        # A file-like object: the library would read a str that happens to name a file.
        return mt940.parse(io.StringIO(block), options=OPTIONS, tags=TAGS,
                           processors={"post_forward_available_balance": [keep]})
    except RuntimeError as exc:  # the library's "Unable to parse <tag> from <value>"
        raise ValidationError(_unreadable(exc, block, reference, line)) from None
    except (ValueError, ArithmeticError) as exc:
        raise ValidationError(f"statement {reference} (line {line}) cannot be read: {exc}") from None


def _unreadable(exc: RuntimeError, block: str, reference: str, line: int) -> str:
    """Which field the library could not read and on which line; never the text (it goes to dead letters)."""
    _, tag, value = (*exc.args, None, None, None)[:3]
    tag_id = str(getattr(tag, "id", "") or "")
    field = f":{tag_id}:" if tag_id else "a field"
    # The library read the field's text with blank lines and line ends removed: find the field that starts so.
    first = value.split("\n", 1)[0] if isinstance(value, str) else None
    at = next((n for found, text, n in _fields(block, line)
               if found.startswith(tag_id) and first is not None
               and "\n".join(mt940.models.Transactions.strip(text.split("\n"))).strip().startswith(first)), line)
    return f"statement {reference}: {field} on line {at} is not valid MT940, so the file cannot be read"


def _balance(balance: Any, what: str) -> tuple[Decimal, str]:
    amount = getattr(balance, "amount", None)
    currency = getattr(amount, "currency", None)
    if amount is None or not currency:
        raise ValidationError(f"{what} has no amount and currency")
    return _decimal(amount.amount, what), currency


def _entry(data: dict, key: str, n: int, where: str) -> dict:
    amount = data.get("amount")
    what = f"entry {n} of {where}"
    if amount is None or not amount.currency:
        raise ValidationError(f"{what} has no amount and currency")
    value_day = data.get("date")
    day = data.get("guessed_entry_date") or data.get("entry_date") or value_day
    return {"entry_id": f"{key}:{n}", "entry_ref": _reference(data.get("bank_reference")),
            "booking_date": day.isoformat() if day else None,
            "value_date": value_day.isoformat() if value_day else None,
            "amount": _decimal(amount.amount, what), "currency": amount.currency,
            "description": _description(data)}


def _decimal(value: Any, what: str) -> Decimal:
    """The library's amount as Decimal; from its text if it is ever not one, never through float."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            return Decimal(value.replace(",", "."))
        except InvalidOperation:
            raise ValidationError(f"{what} has an amount that is not a number: {value!r}") from None
    raise TransformError(f"{what}: the mt940 library gave a {type(value).__name__} amount; money must be Decimal")


def _reference(value: Any) -> str | None:
    text = _clean(value)
    return text if text and text.upper() != NO_REFERENCE else None


def _description(data: dict) -> str | None:
    """The structured purpose (?20-?29), else the free :86: text, else the payer, posting text or :61: details."""
    for key in ("purpose", "transaction_details", "applicant_name", "posting_text", "extra_details"):
        text = _clean(data.get(key))
        if text:
            return text
    return None


def _clean(value: Any) -> str | None:
    """Text on one line: the lines of :86: are joined with a space, runs of blanks made one."""
    text = " ".join(value.split()) if isinstance(value, str) else None
    return text or None
