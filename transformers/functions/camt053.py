"""camt.053 statements and camt.052 intraday reports, as JSON from `xml_to_json`: the bank-neutral
statement shape, and its reconciliation (shared with MT940).

The body is the xmltodict-style JSON of a camt `Document`: element names as written, attributes
as "@Ccy", text as "#text" beside attributes. Amounts stay text in the XML and become Decimal
here, never float. Only booked entries (`Sts` BOOK) move the booked balances OPBD/PRCD -> CLBD,
so pending (PDNG) and information-only (INFO) entries are left out of both the reconciliation
and the ledger posting. A reversal entry (`RvslInd` true) already carries the booking direction
in `CdtDbtInd`, so it is signed like any other entry.

`entries` (camt.053) and `intraday_entries` (camt.052) give the shape that the MT940 route's parser
gives too, described with its identities in routes/README.md:
{message_id, statements: [{statement_id, statement_key, account, currency, opening, closing,
closing_date, forward_available, entries: [{entry_id, entry_ref, booking_date, value_date, amount,
currency, description, charges}]}]}. `reconcile_statements` checks that shape: one reconciliation
for camt.053 and MT940 alike. A statement is in one currency, its account's (Acct/Ccy, else its
first booked balance's); balances in other currencies are left out, and an entry in another
currency does not reconcile.

Dates: a date-time (`BookgDt/DtTm`, `ValDt/DtTm`, `Bal/Dt/DtTm`) becomes the date it is in the
account's time zone (the route's `timezone`, or `account_timezones[account]`); one without an
offset is already the account's local time.

Charges (`Ntry/Chrgs`: camt.053.001.02 lists them flat, .04 and later as `Chrgs/Rcrd`) that the
bank took out of the entry amount (`ChrgInclInd` true or absent) become lines of their own,
signed as they move the account (a DBIT charge is negative), to the route's `fee_account`; the
entry's `amount` is then the gross amount, so that amount + its charges is what the bank booked.
A charge with `ChrgInclInd` false is not in this entry's amount (it is booked as an entry of its
own, or later), so it is not posted here: that would post it twice.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from esb.errors import BusinessError, TransformError, ValidationError
from esb.loading.registry import did_you_mean

OPENING = ("OPBD", "PRCD")   # booked opening balance; PRCD (previous closing) when OPBD is absent
CLOSING = "CLBD"
INTERIM = "ITBD"             # interim booked: a camt.052 report's booked balance so far
FORWARD = "FWAV"             # forward available: the balance with the value-dated entries of that day
SIGN = {"CRDT": 1, "DBIT": -1}
AMOUNT = re.compile(r"[0-9]+(\.[0-9]+)?")
BOOKED = "BOOK"
CAMT053 = ("BkToCstmrStmt", "Stmt", "camt.053 statement")
CAMT052 = ("BkToCstmrAcctRpt", "Rpt", "camt.052 report")


def entries(body: dict, headers: dict, *, timezone: str, fee_account: str,
            account_timezones: dict | None = None) -> dict:
    """The camt.053 statements as the ledger's POST /entries wants them, with their booked balances."""
    return _read(body, CAMT053, _Settings(timezone, account_timezones, fee_account), provisional=False)


def intraday_entries(body: dict, headers: dict, *, timezone: str, fee_account: str,
                     account_timezones: dict | None = None) -> dict:
    """The booked entries of camt.052 intraday reports, each marked provisional: the day's camt.053
    lists them again (same entry_id when the bank gives an AcctSvcrRef) and is the final word."""
    return _read(body, CAMT052, _Settings(timezone, account_timezones, fee_account), provisional=True)


def statements(body: Any) -> list[dict]:
    return _reports(body, CAMT053)


# --- the reconciliation, on the bank-neutral shape (camt.053 and MT940) ------------------------

def reconcile_statements(body: dict, headers: dict) -> dict:
    """Check opening + signed entries = closing for every statement of {message_id, statements}.

    When that fails, entries valued after the closing balance's date may be what the bank left out
    of it: without them the statement must reconcile, and each forward available balance of their
    value dates must be the closing plus those valued by then. Such entries are marked
    `value_dated: true` and posted (see routes/README.md)."""
    found = body.get("statements") if isinstance(body, dict) else None
    if not isinstance(found, list) or not found:
        raise ValidationError("not a list of statements: expected {message_id, statements: [...]} with statements")
    return {**body, "statements": [_check_statement(stmt) for stmt in found]}


def _check_statement(stmt: dict) -> dict:
    sid, currency = stmt.get("statement_id") or "(without Id)", stmt.get("currency")
    lines = stmt.get("entries") or []
    moves = [_moved(entry, n, sid) for n, entry in enumerate(lines, start=1)]
    total: dict[str, Decimal] = defaultdict(Decimal)
    for entry, moved in zip(lines, moves, strict=True):
        total[entry.get("currency")] += moved
    other = sorted(str(c) for c in total if c != currency)
    if other:
        raise BusinessError(f"statement {sid} does not reconcile: it has entries in {', '.join(other)}, "
                            f"but its balances are in {currency}")
    for which in ("opening", "closing"):
        if stmt.get(which) is None:
            raise BusinessError(f"statement {sid} does not reconcile: no booked {which} balance in {currency}"
                                + _other_currencies(stmt, which))
    opening = _number(stmt["opening"], f"the opening balance of statement {sid}")
    closing = _number(stmt["closing"], f"the closing balance of statement {sid}")
    moved = total[currency]
    if opening + moved == closing:
        return stmt
    failure = (f"statement {sid} does not reconcile: opening {opening} + entries {moved} "
               f"!= closing {closing} {currency} (difference {closing - opening - moved})")
    later = _valued_later(stmt, lines, moves)
    if not later:
        raise BusinessError(failure)
    booked = moved - sum(later.values())
    if opening + booked != closing:
        which = "the entry" if len(later) == 1 else f"the {len(later)} entries"
        raise BusinessError(f"{failure}; without {which} valued after {stmt['closing_date']} "
                            f"it is still off by {closing - opening - booked}")
    _check_forward(stmt, sid, lines, later, closing)
    return {**stmt, "entries": [{**e, "value_dated": True} if n in later else e for n, e in enumerate(lines)]}


def _moved(entry: dict, n: int, sid: str) -> Decimal:
    """What the entry moved the balance by: its amount and the charges posted with it."""
    moved = _number(entry.get("amount"), f"entry {n} of statement {sid}")
    for k, charge in enumerate(entry.get("charges") or [], start=1):
        moved += _number(charge.get("amount"), f"charge {k} of entry {n} of statement {sid}")
    return moved


def _valued_later(stmt: dict, lines: list[dict], moves: list[Decimal]) -> dict[int, Decimal]:
    """Index -> movement of the entries whose value date is after the closing balance's date."""
    closing_date = stmt.get("closing_date")
    if not closing_date:
        return {}
    return {n: moved for n, (entry, moved) in enumerate(zip(lines, moves, strict=True))
            if entry.get("value_date") and str(entry["value_date"]) > str(closing_date)}


def _check_forward(stmt: dict, sid: str, lines: list[dict], later: dict[int, Decimal], closing: Decimal) -> None:
    """Each forward available balance dated on one of those value dates = closing + those valued by then."""
    forward = {str(f.get("date")): _number(f.get("amount"), f"the forward available balance of statement {sid}")
               for f in stmt.get("forward_available") or []}
    for day in sorted({str(lines[n]["value_date"]) for n in later}):
        if day not in forward:
            continue
        expected = closing + sum(m for n, m in later.items() if str(lines[n]["value_date"]) <= day)
        if forward[day] != expected:
            raise BusinessError(
                f"statement {sid} does not reconcile: without the entries valued after {stmt['closing_date']} "
                f"it does, but closing {closing} + those valued by {day} = {expected} != forward available "
                f"{forward[day]} {stmt.get('currency')} on {day} (difference {forward[day] - expected})")


def _other_currencies(stmt: dict, which: str) -> str:
    found = (stmt.get("balance_currencies") or {}).get(which) or []
    return f"; it has one only in {', '.join(found)}" if found else ""


def _number(value: Any, what: str) -> Decimal:
    """An amount of the statement shape: Decimal or int (JSON numbers), never float or text."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise ValidationError(f"{what} is not an exact number: {value!r}")
    return Decimal(value)


# --- reading camt.053 / camt.052 ------------------------------------------------------------------

class _Settings:
    """The route's args, checked once per message: an unknown zone name fails with the name."""

    def __init__(self, timezone: str, account_timezones: dict | None, fee_account: str):
        self.zone = _zone(timezone, "timezone")
        self.zones = {str(k): _zone(v, f"account_timezones for {k}") for k, v in (account_timezones or {}).items()}
        self.fee_account = str(fee_account)

    def zone_of(self, account: str | None) -> ZoneInfo:
        return self.zones.get(account or "", self.zone)


def _zone(name: Any, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(str(name), sorted(available_timezones())).partition("Valid names")[0]
        raise TransformError(f"the route's {what} {name!r} is not an IANA time zone name such as "
                             f"Europe/Zurich. {hint}".strip()) from None


def _read(body: Any, kind: tuple[str, str, str], settings: _Settings, *, provisional: bool) -> dict:
    header = _child(_root(_document(body, kind), kind[0]), "GrpHdr") or {}
    return {"message_id": _text(_child(header, "MsgId")),
            "statements": [_statement(stmt, settings, provisional) for stmt in _reports(body, kind)]}


def _reports(body: Any, kind: tuple[str, str, str]) -> list[dict]:
    root, element, name = kind
    document = _document(body, kind)
    found = _list(_child(_root(document, root), element))
    if not found:
        other = CAMT052 if kind is CAMT053 else CAMT053
        if _root(document, other[0]) is not None:
            raise ValidationError(f"not a {name}: this is a {other[2]} (Document/{other[0]}); "
                                  f"it goes to the {other[2][:8]}-to-ledger route")
        raise ValidationError(f"not a {name}: Document/{root} has no {element}")
    return found


def _statement(stmt: dict, settings: _Settings, provisional: bool) -> dict:
    sid = _statement_id(stmt)
    account_node = _child(stmt, "Acct") or {}
    account = _account(account_node)
    zone = settings.zone_of(account)
    balances = _balances(stmt, sid, zone)
    currency = (_text(_child(account_node, "Ccy")) or balances.first_currency()
                or _first_entry_currency(stmt, sid))
    found = balances.found()
    # a camt.052 report without a closing balance has its interim booked one (ITBD) so far
    closing = found.get((CLOSING, currency)) or (found.get((INTERIM, currency)) if provisional else None)
    opening = found.get(("OPBD", currency)) or found.get(("PRCD", currency))
    key = _statement_key(stmt, sid, account, closing and closing[1], zone)
    return {"statement_id": sid, "statement_key": key, "account": account, "currency": currency,
            "opening": opening and opening[0], "closing": closing and closing[0],
            "closing_date": closing and closing[1],
            "forward_available": [{"date": day, "amount": amount}
                                  for amount, day in balances.all.get((FORWARD, currency), [])],
            "balance_currencies": balances.currencies(currency),
            "entries": _entries(stmt, sid, key, account, zone, settings, provisional)}


def _statement_key(stmt: dict, sid: str, account: str | None, closing_date: str | None, zone: ZoneInfo) -> str:
    """`<account>:<number>:<date>`: the closing balance's date, else the period's end, else the creation's."""
    day = (closing_date
           or _moment_day(_text(_path(stmt, "FrToDt", "ToDtTm")), zone, f"FrToDt/ToDtTm of statement {sid}")
           or _moment_day(_text(_child(stmt, "CreDtTm")), zone, f"CreDtTm of statement {sid}"))
    number = (_text(_child(stmt, "ElctrncSeqNb")) or _text(_child(stmt, "LglSeqNb")) or sid).strip()
    return f"{account or ''}:{number}:{day or ''}"


def _entries(stmt: dict, sid: str, key: str, account: str | None, zone: ZoneInfo, settings: _Settings,
             provisional: bool) -> list[dict]:
    everything = _list(_child(stmt, "Ntry"))
    refs = [_text(_child(e, "AcctSvcrRef")) for e in everything]
    lines = []
    for n, entry in enumerate(everything, start=1):
        if not _is_booked(entry):
            continue
        where = f"entry {n} of statement {sid}"
        ref = refs[n - 1]
        entry_id = f"{account or ''}:{ref}" if ref and refs.count(ref) == 1 else f"{key}:{n}"
        amount, currency = _signed(entry, where)
        charges = _charges(entry, entry_id, currency, settings.fee_account, where)
        line = {"entry_id": entry_id, "entry_ref": ref or _text(_child(entry, "NtryRef")),
                "booking_date": _day(_child(entry, "BookgDt"), zone, f"BookgDt of {where}"),
                "value_date": _day(_child(entry, "ValDt"), zone, f"ValDt of {where}"),
                "amount": amount - sum((c["amount"] for c in charges), Decimal(0)),  # gross: charges apart
                "currency": currency, "description": _description(entry), "charges": charges}
        if provisional:
            line["provisional"] = True
        lines.append(line)
    return lines


def _charges(entry: dict, entry_id: str, currency: str, fee_account: str, where: str) -> list[dict]:
    """The charges included in the entry's amount, as lines to the fee account."""
    found = _list(_child(entry, "Chrgs"))
    records = [r for c in found for r in _list(_child(c, "Rcrd"))] or found   # .04+: Chrgs/Rcrd; .02: flat
    lines = []
    for k, record in enumerate(records, start=1):
        if (_text(_child(record, "ChrgInclInd")) or "true").strip().lower() in ("false", "0"):
            continue  # pre-advised or booked as an entry of its own, not in this amount
        what = f"charge {k} of {where}"
        if _text(_child(record, "CdtDbtInd")) is None:   # optional; a bank's charge is a debit
            record = {**record, "CdtDbtInd": "DBIT"}
        amount, charge_currency = _signed(record, what)
        if amount == 0:
            continue
        if charge_currency != currency:
            raise ValidationError(f"{what} is in {charge_currency}, but it is included in an amount in "
                                  f"{currency}: esb cannot take it out of the entry amount")
        lines.append({"entry_id": f"{entry_id}:charge:{k}", "account": fee_account, "amount": amount,
                      "currency": charge_currency, "type": _charge_type(record)})
    return lines


def _charge_type(record: dict) -> str | None:
    kind = _child(record, "Tp")
    return _text(_child(kind, "Cd")) or _text(_path(kind, "Prtry", "Id"))


class _Balances:
    """The booked and forward balances of a statement, by (code, currency): [(amount, date)]."""

    def __init__(self) -> None:
        self.all: dict[tuple[str, str], list[tuple[Decimal, str | None]]] = defaultdict(list)

    def found(self) -> dict[tuple[str, str], tuple[Decimal, str | None]]:
        """The first balance of each code and currency."""
        return {key: values[0] for key, values in self.all.items()}

    def first_currency(self) -> str | None:
        return next((ccy for code in (*OPENING, CLOSING, INTERIM) for c, ccy in self.all if c == code), None)

    def currencies(self, currency: str | None) -> dict[str, list[str]]:
        """The currencies of the booked opening and closing balances the bank gave in others than `currency`."""
        def of(codes: tuple[str, ...]) -> list[str]:
            return sorted({ccy for code, ccy in self.all if code in codes and ccy != currency})
        return {"opening": of(OPENING), "closing": of((CLOSING,))}


def _balances(stmt: dict, sid: str, zone: ZoneInfo) -> _Balances:
    found = _Balances()
    for bal in _list(_child(stmt, "Bal")):
        code = _text(_path(bal, "Tp", "CdOrPrtry", "Cd"))
        if code in (*OPENING, CLOSING, INTERIM, FORWARD):
            what = f"the {code} balance of statement {sid}"
            amount, currency = _signed(bal, what)
            found.all[(code, currency)].append((amount, _day(_child(bal, "Dt"), zone, f"Dt of {what}")))
    return found


def _first_entry_currency(stmt: dict, sid: str) -> str | None:
    booked = [e for e in _list(_child(stmt, "Ntry")) if _is_booked(e)]
    return _signed(booked[0], f"entry 1 of statement {sid}")[1] if booked else None


def _is_booked(entry: dict) -> bool:
    status = _child(entry, "Sts")
    status = _text(_child(status, "Cd")) if isinstance(_first(status), dict) else _text(status)  # .08+: Sts/Cd
    return status in (BOOKED, None)


def _signed(node: dict, what: str) -> tuple[Decimal, str]:
    """The amount of a Bal, Ntry or charge record, negative when debit, and its currency."""
    amt = _child(node, "Amt")
    text = _text(amt)
    currency = _first(amt).get("@Ccy") if isinstance(_first(amt), dict) else None
    indicator = _text(_child(node, "CdtDbtInd"))
    if indicator not in SIGN:
        raise ValidationError(f"{what} has CdtDbtInd {indicator!r}, expected CRDT or DBIT")
    if not currency:
        raise ValidationError(f"{what} has an amount without a Ccy")
    # ISO 20022 amounts are ASCII digits with at most one point: Decimal alone would also take
    # "NaN", "1E+3" or fullwidth digits
    if not isinstance(text, str) or not AMOUNT.fullmatch(text.strip()):
        raise ValidationError(f"{what} has an amount that is not a number: {text!r}")
    return Decimal(text.strip()) * SIGN[indicator], currency


def _day(node: Any, zone: ZoneInfo, what: str) -> str | None:
    """The ISO date of a date-or-time choice (BookgDt, ValDt, Bal/Dt): its `Dt`, or its `DtTm` in `zone`."""
    day = _text(_child(node, "Dt"))
    if day is None:
        return _moment_day(_text(_child(node, "DtTm")), zone, what)
    try:
        return date.fromisoformat(day.strip()[:10]).isoformat()   # xs:date may carry an offset: the day stays
    except ValueError:
        raise ValidationError(f"{what} is not an ISO date: {day!r}") from None


def _moment_day(moment: str | None, zone: ZoneInfo, what: str) -> str | None:
    """The date a date-time is in `zone`; without an offset it is already the account's local time."""
    if moment is None:
        return None
    try:
        stamp = datetime.fromisoformat(moment.strip())
    except ValueError:
        raise ValidationError(f"{what} is not an ISO date-time: {moment!r}") from None
    return (stamp.astimezone(zone) if stamp.tzinfo else stamp).date().isoformat()


def _statement_id(stmt: dict) -> str:
    return _text(_child(stmt, "Id")) or "(without Id)"


def _account(account: dict) -> str | None:
    ident = _child(account, "Id") or {}
    return (_text(_child(ident, "IBAN")) or _text(_path(ident, "Othr", "Id"))
            or _text(_path(ident, "PrtryAcct", "Id")) or _text(_child(ident, "BBAN")))   # .001.01


def _description(entry: dict) -> str | None:
    """Free text first, then the counterparty, then the bank transaction code."""
    info = _text(_child(entry, "AddtlNtryInf"))
    if info:
        return info
    details = [tx for d in _list(_child(entry, "NtryDtls")) for tx in _list(_child(d, "TxDtls"))]
    texts = [_text(u) for tx in details for u in _list(_path(tx, "RmtInf", "Ustrd")) if _text(u)]
    if texts:
        return "; ".join(dict.fromkeys(texts))
    for tx in details:
        for role in ("Dbtr", "Cdtr"):
            name = _text(_path(tx, "RltdPties", role, "Nm"))
            if name:
                return name
    return _bank_code(_child(entry, "BkTxCd"))


def _bank_code(code: Any) -> str | None:
    if not isinstance(code, dict):
        return None
    domain = _child(code, "Domn")
    if isinstance(domain, dict):
        family = _child(domain, "Fmly") or {}
        parts = [_text(_child(domain, "Cd")), _text(_child(family, "Cd")), _text(_child(family, "SubFmlyCd"))]
        return "/".join(p for p in parts if p)
    return _text(_path(code, "Prtry", "Cd"))


# --- reading xmltodict-style JSON -------------------------------------------------------------

def _document(body: Any, kind: tuple[str, str, str]) -> dict:
    if not isinstance(body, dict) or len(body) != 1:
        raise ValidationError(f"not a {kind[2]}: expected one root element, Document")
    (name, document), = body.items()
    if _local(name) != "Document" or not isinstance(document, dict):
        raise ValidationError(f"not a {kind[2]}: the root element is {name}, not Document")
    return document


def _root(document: dict, name: str) -> Any:
    """The message element under Document; version .001.01 names it with a V01 suffix."""
    found = _child(document, name)
    return found if found is not None else _child(document, f"{name}V01")


def _child(node: Any, name: str) -> Any:
    """A child element by local name (a bank may write ns2:Stmt)."""
    node = _first(node) if isinstance(node, list) else node
    if not isinstance(node, dict):
        return None
    if name in node:
        return node[name]
    for key, value in node.items():
        if not key.startswith("@") and _local(key) == name:
            return value
    return None


def _path(node: Any, *names: str) -> Any:
    for name in names:
        node = _child(_first(node), name)
    return node


def _first(node: Any) -> Any:
    return node[0] if isinstance(node, list) and node else node


def _list(node: Any) -> list:
    if node is None:
        return []
    return node if isinstance(node, list) else [node]


def _text(node: Any) -> str | None:
    """The text of an element: a plain string, or "#text" when it has attributes."""
    node = _first(node)
    if isinstance(node, dict):
        node = node.get("#text")
    return node if isinstance(node, str) and node.strip() else None


def _local(name: str) -> str:
    return name.rpartition(":")[2]
