"""camt.053 bank statements, as JSON from `xml_to_json`: reconcile the balances, list the entries.

The body is the xmltodict-style JSON of a camt.053 `Document`: element names as written,
attributes as "@Ccy", text as "#text" beside attributes. Amounts stay text in the XML and
become Decimal here, never float. Only booked entries (`Sts` BOOK) move the booked balances
OPBD/PRCD -> CLBD, so pending (PDNG) and information-only (INFO) entries are left out of both
the reconciliation and the ledger posting. A reversal entry (`RvslInd` true) already carries the
booking direction in `CdtDbtInd`, so it is signed like any other entry.

`entries` gives the bank-neutral statement shape that the MT940 route's parser gives too,
{message_id, statements: [{statement_id, account, currency, opening, closing, entries}]}, and
`reconcile_statements` checks that shape: one reconciliation for camt.053 and MT940 alike. A
statement is in one currency, its account's (Acct/Ccy, else its first booked balance's);
balances in other currencies are left out, and an entry in another currency does not reconcile.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal, InvalidOperation
from typing import Any

from esb.errors import BusinessError, ValidationError

OPENING = ("OPBD", "PRCD")   # booked opening balance; PRCD (previous closing) when OPBD is absent
CLOSING = "CLBD"
SIGN = {"CRDT": 1, "DBIT": -1}
BOOKED = "BOOK"


def reconcile(body: dict, headers: dict) -> dict:
    """Check opening + signed booked entries = closing for every statement; the body is unchanged."""
    reconcile_statements(entries(body, headers), headers)
    return body


def entries(body: dict, headers: dict) -> dict:
    """The statements as the ledger's POST /entries wants them, with their booked balances."""
    header = _child(_child(_document(body), "BkToCstmrStmt"), "GrpHdr") or {}
    return {"message_id": _text(_child(header, "MsgId")),
            "statements": [_statement(stmt) for stmt in statements(body)]}


def statements(body: Any) -> list[dict]:
    found = _list(_child(_child(_document(body), "BkToCstmrStmt"), "Stmt"))
    if not found:
        raise ValidationError("not a camt.053 statement: Document/BkToCstmrStmt has no Stmt")
    return found


# --- the reconciliation, on the bank-neutral shape (camt.053 and MT940) ------------------------

def reconcile_statements(body: dict, headers: dict) -> dict:
    """Check opening + signed entries = closing for every statement of {message_id, statements}."""
    found = body.get("statements") if isinstance(body, dict) else None
    if not isinstance(found, list) or not found:
        raise ValidationError("not a list of statements: expected {message_id, statements: [...]} with statements")
    for stmt in found:
        _check_statement(stmt)
    return body


def _check_statement(stmt: dict) -> None:
    sid, currency = stmt.get("statement_id") or "(without Id)", stmt.get("currency")
    moved: dict[str, Decimal] = defaultdict(Decimal)
    for n, entry in enumerate(stmt.get("entries") or [], start=1):
        moved[entry.get("currency")] += _number(entry.get("amount"), f"entry {n} of statement {sid}")
    other = sorted(str(c) for c in moved if c != currency)
    if other:
        raise BusinessError(f"statement {sid} does not reconcile: it has entries in {', '.join(other)}, "
                            f"but its balances are in {currency}")
    for which in ("opening", "closing"):
        if stmt.get(which) is None:
            raise BusinessError(f"statement {sid} does not reconcile: no booked {which} balance in {currency}")
    opening = _number(stmt["opening"], f"the opening balance of statement {sid}")
    closing = _number(stmt["closing"], f"the closing balance of statement {sid}")
    total = opening + moved[currency]
    if total != closing:
        raise BusinessError(
            f"statement {sid} does not reconcile: opening {opening} + entries {moved[currency]} "
            f"!= closing {closing} {currency} (difference {closing - total})")


def _number(value: Any, what: str) -> Decimal:
    """An amount of the statement shape: Decimal or int (JSON numbers), never float or text."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise ValidationError(f"{what} is not an exact number: {value!r}")
    return Decimal(value)


# --- reading camt.053 ---------------------------------------------------------------------------

def _balances(stmt: dict, sid: str) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Opening and closing booked balances by currency (OPBD wins over PRCD)."""
    found: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for bal in _list(_child(stmt, "Bal")):
        code = _text(_path(bal, "Tp", "CdOrPrtry", "Cd"))
        if code in (*OPENING, CLOSING):
            amount, currency = _signed(bal, f"the {code} balance of statement {sid}")
            found[code].setdefault(currency, amount)
    opening = {**found["PRCD"], **found["OPBD"]}
    return opening, found[CLOSING]


def _statement(stmt: dict) -> dict:
    sid = _statement_id(stmt)
    account = _child(stmt, "Acct") or {}
    opening, closing = _balances(stmt, sid)
    lines = []
    for n, entry in enumerate(_booked(stmt), start=1):
        amount, entry_currency = _signed(entry, f"entry {n} of statement {sid}")
        lines.append({"entry_ref": _entry_ref(entry, sid, n), "booking_date": _date(_child(entry, "BookgDt")),
                      "amount": amount, "currency": entry_currency, "description": _description(entry)})
    currency = (_text(_child(account, "Ccy")) or next(iter(opening), None) or next(iter(closing), None)
                or (lines[0]["currency"] if lines else None))
    return {"statement_id": sid, "account": _account(account), "currency": currency,
            "opening": opening.get(currency), "closing": closing.get(currency), "entries": lines}


def _booked(stmt: dict) -> list[dict]:
    result = []
    for entry in _list(_child(stmt, "Ntry")):
        status = _child(entry, "Sts")
        status = _text(_child(status, "Cd")) if isinstance(status, dict) else _text(status)  # .08+: Sts/Cd
        if status in (BOOKED, None):
            result.append(entry)
    return result


def _signed(node: dict, what: str) -> tuple[Decimal, str]:
    """The amount of a Bal or Ntry, negative when debit, and its currency."""
    amt = _child(node, "Amt")
    text = _text(amt)
    currency = amt.get("@Ccy") if isinstance(amt, dict) else None
    indicator = _text(_child(node, "CdtDbtInd"))
    if indicator not in SIGN:
        raise ValidationError(f"{what} has CdtDbtInd {indicator!r}, expected CRDT or DBIT")
    if not currency:
        raise ValidationError(f"{what} has an amount without a Ccy")
    try:
        amount = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise ValidationError(f"{what} has an amount that is not a number: {text!r}") from None
    return amount * SIGN[indicator], currency


def _statement_id(stmt: dict) -> str:
    return _text(_child(stmt, "Id")) or "(without Id)"


def _account(account: dict) -> str | None:
    ident = _child(account, "Id") or {}
    return _text(_child(ident, "IBAN")) or _text(_path(ident, "Othr", "Id"))


def _entry_ref(entry: dict, sid: str, n: int) -> str:
    """The bank's reference of the entry, else its position in the statement."""
    return _text(_child(entry, "NtryRef")) or _text(_child(entry, "AcctSvcrRef")) or f"{sid}/{n}"


def _date(node: Any) -> str | None:
    if not isinstance(node, dict):
        return None
    day = _text(_child(node, "Dt"))
    moment = _text(_child(node, "DtTm"))
    return day or (moment[:10] if moment else None)


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

def _document(body: Any) -> dict:
    if not isinstance(body, dict) or len(body) != 1:
        raise ValidationError("not a camt.053 statement: expected one root element, Document")
    (name, document), = body.items()
    if _local(name) != "Document" or not isinstance(document, dict):
        raise ValidationError(f"not a camt.053 statement: the root element is {name}, not Document")
    return document


def _child(node: Any, name: str) -> Any:
    """A child element by local name (a bank may write ns2:Stmt)."""
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
