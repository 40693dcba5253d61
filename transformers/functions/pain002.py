"""pain.002 customer payment status reports, as JSON from `xml_to_json`: the update of one payment order.

The body is the xmltodict-style JSON of a pain.002 `Document` (CstmrPmtStsRpt), any version or
namespace (names are read by local name). The pain.001 that payment-order-to-pain001 sends has
one payment info per ERP order: MsgId "ESB-" + order_id, PmtInfId = order_id, and each payment's
EndToEndId from the order. So the order is OrgnlPmtInfId, else OrgnlMsgId without "ESB-"; a
report on several payment infos is refused, as one message updates one order.

The status is the most specific one that covers the whole order: PmtInfSts, else GrpSts, else the
transactions' TxSts (one code when they agree, PART when some are rejected). Its reason is the
first StsRsnInf of that level: Rsn/Cd (or Rsn/Prtry) and the AddtlInf lines joined. Every
transaction with TxSts RJCT is listed with its EndToEndId and reason. The result is the body of
the ledger's PATCH /payment-orders/{order_id}:

    {order_id, status: accepted|rejected|pending|partially_accepted, status_code, reason_code,
     reason, rejected_transactions: [{end_to_end_id, reason_code, reason}], bank_message_id, reported_at}
"""

from __future__ import annotations

from typing import Any

from esb.errors import ValidationError

ORDER_PREFIX = "ESB-"  # transformers/mappings/payment-order-to-pain001.yaml: MsgId = concat('ESB-', order_id)
REJECTED = "RJCT"
PARTIAL = "PART"
# ISO 20022 ExternalPaymentTransactionStatus1Code / TransactionGroupStatus3Code
STATUS = {
    **dict.fromkeys(("ACCC", "ACCP", "ACFC", "ACSC", "ACSP", "ACTC", "ACWC", "ACWP"), "accepted"),
    **dict.fromkeys(("PDNG", "RCVD"), "pending"),
    **dict.fromkeys(("PART", "PATC"), "partially_accepted"),
    REJECTED: "rejected",
}


def order_update(body: dict, headers: dict) -> dict:
    """The order's new status, from a pain.002 status report."""
    report = _report(body)
    group = _child(report, "OrgnlGrpInfAndSts") or {}
    infos = _list(_child(report, "OrgnlPmtInfAndSts"))
    order_id = _order_id(group, infos)
    transactions = [tx for info in infos for tx in _list(_child(info, "TxInfAndSts"))]
    code, reason = _status(group, infos, transactions)
    header = _child(report, "GrpHdr") or {}
    return {"order_id": order_id, "status": STATUS[code], "status_code": code,
            "reason_code": _reason_code(reason), "reason": _reason_text(reason),
            "rejected_transactions": [_rejected(tx) for tx in transactions if _code(tx, "TxSts") == REJECTED],
            "bank_message_id": _text(_child(header, "MsgId")), "reported_at": _text(_child(header, "CreDtTm"))}


def _report(body: Any) -> dict:
    if not isinstance(body, dict) or len(body) != 1:
        raise ValidationError("not a pain.002 status report: expected one root element, Document")
    (name, document), = body.items()
    report = _child(document, "CstmrPmtStsRpt") if _local(name) == "Document" else None
    if not isinstance(report, dict):
        raise ValidationError(f"not a pain.002 status report: {name} has no CstmrPmtStsRpt")
    return report


def _order_id(group: dict, infos: list) -> str:
    ids = list(dict.fromkeys(i for i in (_text(_child(info, "OrgnlPmtInfId")) for info in infos) if i))
    if len(ids) > 1:
        raise ValidationError(f"the report covers {len(ids)} payment infos ({', '.join(ids)}); "
                              "one message updates one order")
    if ids:
        return ids[0]
    message_id = _text(_child(group, "OrgnlMsgId")) or ""
    if not message_id.startswith(ORDER_PREFIX) or message_id == ORDER_PREFIX:
        raise ValidationError(f"cannot tell the order: no OrgnlPmtInfId, and OrgnlMsgId {message_id!r} "
                              f"is not one esb sends ({ORDER_PREFIX}<order_id>)")
    return message_id[len(ORDER_PREFIX):]


def _status(group: dict, infos: list, transactions: list) -> tuple[str, dict | None]:
    """The status code covering the whole order and the reason given with it."""
    for node, element in [*((info, "PmtInfSts") for info in infos), (group, "GrpSts")]:
        code = _code(node, element)
        if code:
            return code, _first_reason(node)
    codes = [_code(tx, "TxSts") for tx in transactions]
    if not codes or None in codes:
        raise ValidationError("the report gives no status for the order: no PmtInfSts, GrpSts or TxSts")
    if len(set(codes)) == 1:
        return codes[0], _first_reason(transactions[0])
    return (PARTIAL if REJECTED in codes else codes[0]), None


def _code(node: Any, element: str) -> str | None:
    code = _text(_child(node, element))
    if code is not None and code not in STATUS:
        raise ValidationError(f"{element} {code!r} is not a payment status code esb knows "
                              f"({', '.join(sorted(STATUS))})")
    return code


def _rejected(tx: dict) -> dict:
    reason = _first_reason(tx)
    return {"end_to_end_id": _text(_child(tx, "OrgnlEndToEndId")),
            "reason_code": _reason_code(reason), "reason": _reason_text(reason)}


def _first_reason(node: Any) -> dict | None:
    reasons = _list(_child(node, "StsRsnInf"))
    return reasons[0] if reasons and isinstance(reasons[0], dict) else None


def _reason_code(reason: dict | None) -> str | None:
    cause = _child(reason, "Rsn")
    return _text(_child(cause, "Cd")) or _text(_child(cause, "Prtry"))


def _reason_text(reason: dict | None) -> str | None:
    lines = [_text(line) for line in _list(_child(reason, "AddtlInf"))]
    return " ".join(line for line in lines if line) or None


# --- reading xmltodict-style JSON (as in camt053.py: a function file cannot import another) ---

def _child(node: Any, name: str) -> Any:
    """A child element by local name (a bank may write ns2:TxInfAndSts)."""
    if not isinstance(node, dict):
        return None
    if name in node:
        return node[name]
    for key, value in node.items():
        if not key.startswith("@") and _local(key) == name:
            return value
    return None


def _list(node: Any) -> list:
    if node is None:
        return []
    return node if isinstance(node, list) else [node]


def _text(node: Any) -> str | None:
    """The text of an element: a plain string, or "#text" when it has attributes."""
    if isinstance(node, list):
        node = node[0] if node else None
    if isinstance(node, dict):
        node = node.get("#text")
    return node.strip() if isinstance(node, str) and node.strip() else None


def _local(name: str) -> str:
    return name.rpartition(":")[2]
