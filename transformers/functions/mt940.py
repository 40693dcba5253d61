"""SWIFT MT940 customer statements, as text: parse them into the statement shape of camt053.entries.

The text is read by the `mt-940` library (import `mt940`), which gives each amount as a signed
Decimal made from its text (`mt940.models.Amount`): a float never appears, and `_decimal`
refuses one if a later release ever gave it. The result is the bank-neutral shape that
`camt053.py:reconcile_statements` checks and the ledger's POST /entries takes:

    {message_id, statements: [{statement_id, account, currency, opening, closing,
                               entries: [{entry_ref, booking_date, amount, currency, description}]}]}

Each `:20:` block is one statement: `statement_id` is its `:20:` reference (camt.053's Stmt/Id in
the usual MT940 -> camt.053 mapping) and `message_id` the first one's, as MT940 has no file id.
Opening and closing are the booked balances :60F:/:60M: and :62F:/:62M: (M for a statement
continued on another page). Every :61: line is a booked entry, signed by its mark: C and RD
(reversal of a debit) positive, D and RC negative. Its booking date is the entry date of :61:
(else the value date), its reference the bank's (after `//`), else its place in the statement.

Refused with a ValidationError: text with no :20: block, a field the library cannot read, a
statement that repeats a once-only field (a broken file, whose later lines would overwrite the
first), one without an opening or closing balance, or fewer entries read than :61: lines, and an
MT942 interim report (:34F:/:13D:): its entries come again in the day's MT940, so posting them
would post twice. Whether the balances add up is `reconcile_statements`' business, not parsing's.
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
TAG = re.compile(r"(?m)^:\n?(\d{2}[A-Z]?|NS):")
ONCE = {"20": ":20:", "25": ":25:", "28": ":28:/:28C:", "28C": ":28:/:28C:", "60F": ":60F:/:60M:", "60M": ":60F:/:60M:",
        "62F": ":62F:/:62M:", "62M": ":62F:/:62M:"}
MT942_TAGS = {"34F", "13D"}
NO_REFERENCE = "NONREF"

# The library logs a line it cannot read, statement text included, at ERROR: a body never goes to the logs.
logging.getLogger("mt940").setLevel(logging.CRITICAL)


def parse(body: str | bytes, headers: dict) -> dict:
    """The statements of an MT940 file as {message_id, statements}; a ValidationError if it is not one."""
    text = _decoded(body)
    starts = [match.start() for match in STATEMENT_START.finditer(text)]
    if not starts:
        raise ValidationError("not an MT940 statement: no line starts with :20: (the statement's reference)")
    found = [_statement(text[start:end], text.count("\n", 0, start) + 1)
             for start, end in zip(starts, [*starts[1:], len(text)], strict=True)]
    return {"message_id": found[0]["statement_id"], "statements": found}


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
    tags = TAG.findall(block)
    reference = block[4:].split("\n", 1)[0].strip() or f"(without :20:, line {line})"
    _check_fields(tags, reference, line)
    transactions = _parsed(block, reference, line)
    data = transactions.data
    opening = data.get("final_opening_balance") or data.get("intermediate_opening_balance")
    closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
    where = f"statement {reference} (line {line})"
    opening_amount, currency = _balance(opening, f"the opening balance of {where}")
    closing_amount, _ = _balance(closing, f"the closing balance of {where}")
    if len(transactions) != tags.count("61"):
        raise ValidationError(f"{where} has {tags.count('61')} :61: lines, but only {len(transactions)} "
                              "could be read as entries")
    return {"statement_id": reference, "account": _clean(data.get("account_identification")), "currency": currency,
            "opening": opening_amount, "closing": closing_amount,
            "entries": [_entry(t.data, reference, n, where) for n, t in enumerate(transactions, start=1)]}


def _check_fields(tags: list[str], reference: str, line: int) -> None:
    where = f"statement {reference} (line {line})"
    if MT942_TAGS & set(tags):
        raise ValidationError(f"{where} is an MT942 interim report (:34F:/:13D:), not an MT940 statement: "
                              "interim entries come again in the day's MT940, so they are not posted")
    seen: dict[str, int] = {}
    for tag in tags:
        if tag in ONCE:
            seen[ONCE[tag]] = seen.get(ONCE[tag], 0) + 1
    twice = [name for name, count in seen.items() if count > 1]
    if twice:
        raise ValidationError(f"{where} has {' and '.join(twice)} more than once: the file is broken "
                              "(a continuation line that starts with a tag?)")
    for name, what in ((":60F:/:60M:", "opening"), (":62F:/:62M:", "closing")):
        if name not in seen:
            raise ValidationError(f"{where} has no {what} balance ({name})")


def _parsed(block: str, reference: str, line: int) -> mt940.models.Transactions:
    try:
        # A file-like object: the library would read a str that happens to name a file.
        return mt940.parse(io.StringIO(block), options=OPTIONS)
    except RuntimeError as exc:  # the library's "Unable to parse <tag> from <value>"
        raise ValidationError(_unreadable(exc, block, reference, line)) from None
    except (ValueError, ArithmeticError) as exc:
        raise ValidationError(f"statement {reference} (line {line}) cannot be read: {exc}") from None


def _unreadable(exc: RuntimeError, block: str, reference: str, line: int) -> str:
    """Which field the library could not read and on which line; never the text (it goes to dead letters)."""
    _, tag, value = (*exc.args, None, None, None)[:3]
    field = f":{tag.id}:" if getattr(tag, "id", None) else "a field"
    offset = block.find(value) if isinstance(value, str) and value else -1
    at = line + block.count("\n", 0, offset) if offset >= 0 else line
    return f"statement {reference}: {field} on line {at} is not valid MT940, so the file cannot be read"


def _balance(balance: Any, what: str) -> tuple[Decimal, str]:
    amount = getattr(balance, "amount", None)
    currency = getattr(amount, "currency", None)
    if amount is None or not currency:
        raise ValidationError(f"{what} has no amount and currency")
    return _decimal(amount.amount, what), currency


def _entry(data: dict, reference: str, n: int, where: str) -> dict:
    amount = data.get("amount")
    what = f"entry {n} of {where}"
    if amount is None or not amount.currency:
        raise ValidationError(f"{what} has no amount and currency")
    day = data.get("guessed_entry_date") or data.get("entry_date") or data.get("date")
    return {"entry_ref": _reference(data.get("bank_reference")) or f"{reference}/{n}",
            "booking_date": day.isoformat() if day else None,
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
