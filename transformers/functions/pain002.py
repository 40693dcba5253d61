"""pain.002 customer payment status reports, as JSON from `xml_to_json`: the update of one payment order.

The body is the xmltodict-style JSON of a pain.002 `Document` (CstmrPmtStsRpt), versions .03 to .10
(and the Swiss/German variants), names read by local name. The pain.001 that payment-order-to-pain001
sends has one payment info per ERP order: MsgId "ESB-" + order_id, PmtInfId = order_id, and each
payment's EndToEndId from the order. So the order is OrgnlPmtInfId, else OrgnlMsgId without "ESB-";
a report on several payment infos is refused, as one message updates one order.

What the versions changed where this module reads (ISO 20022 pain.002.001.03 to .10):
- GrpHdr/MsgId, CreDtTm; OrgnlGrpInfAndSts/OrgnlMsgId, GrpSts; OrgnlPmtInfAndSts/OrgnlPmtInfId,
  PmtInfSts; TxInfAndSts/OrgnlEndToEndId, TxSts; StsRsnInf/Rsn/(Cd|Prtry), AddtlInf: same names
  and places in every version (.09/.10 add OrgnlUETR beside OrgnlEndToEndId; it is not read).
- The codes: .03 and the next releases restrict GrpSts/PmtInfSts to TransactionGroupStatus3Code
  and TxSts to TransactionIndividualStatus3Code, closed lists (ACCP ACSC ACSP ACTC ACWC PART PDNG
  RCVD RJCT, PART for groups only); from .09 at the latest they are the open ISO external code sets
  ExternalPaymentGroupStatus1Code / ExternalPaymentTransactionStatus1Code. Every code below is
  accepted in every version: a bank writing a newer code into an older namespace still means it.
- The payee's name in OrgnlTxRef/Cdtr: PartyIdentification (Cdtr/Nm) up to .09, Party40Choice
  (Cdtr/Pty/Nm) in .10; both are read.

The order's status is the most specific one that covers the whole order: PmtInfSts, else GrpSts,
else the transactions' TxSts (one code when they agree; PART when some are refused and some not;
otherwise the least advanced code, so one pending payment keeps the order pending). Its reason is
the first StsRsnInf of that level (else the group's): Rsn/Cd (or Rsn/Prtry) and the AddtlInf lines
joined. Every
transaction with TxSts RJCT is listed with its EndToEndId and reason.

Verification of payee (EU Instant Payments Regulation 2024/886; EPC VOP scheme; in Germany the
pain.002.001.10 "VOP status report" of DK Anlage 3 DFUe-Abkommen V3.9 section 2.2.6): the bank
checks each payee name against the account holder before executing the order, and reports per
transaction RCVC (match), RVMC (close match), RVNM (no match) or RVNA (check not possible), RVCM
for a group with mismatches. For RVMC the name the payee's bank holds is in the transaction's
StsRsnInf/AddtlInf (the name we sent stays in OrgnlTxRef/Cdtr). Such an order is not executed
yet: it waits for the payer to release or cancel it, so its status is `pending`. Every transaction
whose check did not come back as a match is listed in `payee_checks`; the route publishes the
update for review when one of them is RVMC or RVNM.

The result is the body of the ledger's PATCH /payment-orders/{order_id}:

    {order_id, status: accepted|rejected|pending|partially_accepted|cancelled, status_code,
     status_meaning, reason_code, reason, rejected_transactions: [{end_to_end_id, reason_code, reason}],
     payee_checks: [{end_to_end_id, code, meaning, creditor_account, name_sent, name_on_account, note}],
     bank_message_id, reported_at}
"""

from __future__ import annotations

from typing import Any, NamedTuple

from esb.errors import ValidationError

ORDER_PREFIX = "ESB-"  # transformers/mappings/payment-order-to-pain001.yaml: MsgId = concat('ESB-', order_id)
REJECTED = "RJCT"
PARTIAL = "PART"
CLOSE_MATCH = "RVMC"


class Code(NamedTuple):
    status: str    # the order's status in the ledger
    meaning: str


# ISO 20022 external code sets, ExternalPaymentTransactionStatus1Code and (PART)
# ExternalPaymentGroupStatus1Code, names and definitions as the code set publishes them (read in
# Thought Machine's Vault payments reference, "ExternalPaymentTransactionStatus1"). ACCR is the
# UK Open Banking "AcceptedCancellationRequest" status.
ISO = {
    "ACCC": Code("accepted", "AcceptedSettlementCompletedCreditorAccount: settled on the creditor's account"),
    "ACCP": Code("accepted", "AcceptedCustomerProfile: technical and customer profile checks passed"),
    "ACCR": Code("cancelled", "AcceptedCancellationRequest: the request to cancel the payment was accepted"),
    "ACFC": Code("accepted", "AcceptedFundsChecked: technical, customer profile and funds checks were successful"),
    "ACIS": Code("accepted", "AcceptedandChequeIssued: the cheque has been issued, not yet deposited or cleared"),
    "ACPD": Code("accepted", "AcceptedClearingProcessed: released by the debtor agent and accepted by the clearing"),
    "ACSC": Code("accepted", "AcceptedSettlementCompletedDebitorAccount: settled on the debtor's account"),
    "ACSP": Code("accepted", "AcceptedSettlementInProcess: all checks passed, accepted for execution"),
    "ACTC": Code("accepted", "AcceptedTechnicalValidation: authentication and validation passed"),
    "ACWC": Code("accepted", "AcceptedWithChange: accepted, but a change will be made, such as the date"),
    "ACWP": Code("accepted", "AcceptedWithoutPosting: accepted without being posted to the creditor's account"),
    "BLCK": Code("pending", "Blocked: funds are neither posted to the creditor's account nor returned to the debtor"),
    "CANC": Code("cancelled", "Cancelled: the payment was cancelled after a request for cancellation"),
    "CPUC": Code("accepted", "CashPickedUpByCreditor: the creditor has picked up the cash"),
    "PART": Code("partially_accepted", "PartiallyAccepted: some transactions were accepted, others not (yet)"),
    "PATC": Code("partially_accepted", "PartiallyAcceptedTechnicalCorrect: valid, not yet every authorisation given"),
    "PDNG": Code("pending", "Pending: further checks and a status update will follow"),
    "PRES": Code("pending", "Presented: the request for payment has been presented to the debtor"),
    "RCVD": Code("pending", "Received: the payment instruction has been received"),
    REJECTED: Code("rejected", "Rejected: the payment instruction has been rejected"),
}
# Verification of payee results, as German banks report them in pain.002.001.10 (DK Anlage 3
# V3.9 section 2.2.6; read in hbci4java ParsePain00200110/GVRVoP, libaqbanking, phpFinTS and the
# business-logics.de VOP note). The order waits for the payer's release: pending.
VERIFICATION = {
    "RCVC": Code("pending", "verification of payee: the name matches the account holder"),
    CLOSE_MATCH: Code("pending", "verification of payee: the name closely matches the account holder's; "
                                 "the bank returned the holder's name"),
    "RVNM": Code("pending", "verification of payee: the name does not match the account holder"),
    "RVNA": Code("pending", "verification of payee: the check was not possible"),
    "RVCM": Code("pending", "verification of payee: completed, with a name mismatch for some payments"),
}
STATUS = ISO | VERIFICATION
MATCH = "RCVC"
REFUSED = ("rejected", "cancelled")


def order_update(body: dict, headers: dict) -> dict:
    """The order's new status, from a pain.002 status report."""
    report = _report(body)
    group = _child(report, "OrgnlGrpInfAndSts") or {}
    infos = _list(_child(report, "OrgnlPmtInfAndSts"))
    order_id = _order_id(group, infos)
    transactions = [tx for info in infos for tx in _list(_child(info, "TxInfAndSts"))]
    code, reason = _status(group, infos, transactions)
    header = _child(report, "GrpHdr") or {}
    return {"order_id": order_id, "status": STATUS[code].status, "status_code": code,
            "status_meaning": STATUS[code].meaning,
            "reason_code": _reason_code(reason), "reason": _reason_text(reason),
            "rejected_transactions": [_rejected(tx) for tx in transactions if _tx_code(tx) == REJECTED],
            "payee_checks": _payee_checks(code, transactions),
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
    levels = [*((info, "PmtInfSts", "OrgnlPmtInfAndSts/PmtInfSts") for info in infos),
              (group, "GrpSts", "OrgnlGrpInfAndSts/GrpSts")]
    for node, element, where in levels:
        code = _code(node, element, where)
        if code:  # one payment info per order: the group's reason explains it when its own is missing
            return code, _first_reason(node) or _first_reason(group)
    codes = [_tx_code(tx) for tx in transactions]
    if not codes or None in codes:
        raise ValidationError("the report gives no status for the order: no PmtInfSts, GrpSts or TxSts")
    if len(set(codes)) == 1:
        return codes[0], _first_reason(transactions[0])
    refused = [c for c in codes if STATUS[c].status in REFUSED]
    if refused and len(refused) < len(codes):
        return PARTIAL, None
    return next((c for c in codes if STATUS[c].status == "pending"), codes[0]), None


def _tx_code(tx: Any) -> str | None:
    end_to_end = _text(_child(tx, "OrgnlEndToEndId"))
    return _code(tx, "TxSts", f"TxInfAndSts/TxSts of EndToEndId {end_to_end!r}")


def _code(node: Any, element: str, where: str) -> str | None:
    code = _text(_child(node, element))
    if code is not None and code not in STATUS:
        raise ValidationError(f"{where} {code!r} is not a payment status code esb knows; it knows the "
                              f"ISO 20022 codes {', '.join(sorted(ISO))} and the verification of payee "
                              f"codes {', '.join(sorted(VERIFICATION))}")
    return code


def _rejected(tx: dict) -> dict:
    reason = _first_reason(tx)
    return {"end_to_end_id": _text(_child(tx, "OrgnlEndToEndId")),
            "reason_code": _reason_code(reason), "reason": _reason_text(reason)}


def _payee_checks(order_code: str, transactions: list) -> list[dict]:
    """Every payee whose name check did not come back as a match; the order itself when only its
    status says so (a group RVNM or RVCM without the transactions)."""
    checks = [_payee_check(tx) for tx in transactions
              if _tx_code(tx) in VERIFICATION and _tx_code(tx) != MATCH]
    if not checks and order_code in VERIFICATION and order_code != MATCH:
        checks = [{"end_to_end_id": None, "code": order_code, "meaning": STATUS[order_code].meaning,
                   "creditor_account": None, "name_sent": None, "name_on_account": None, "note": None}]
    return checks


def _payee_check(tx: dict) -> dict:
    code = _tx_code(tx)
    reference = _child(tx, "OrgnlTxRef")
    creditor = _child(reference, "Cdtr")
    account = _child(_child(reference, "CdtrAcct"), "Id")
    text = _reason_text(_first_reason(tx))
    return {"end_to_end_id": _text(_child(tx, "OrgnlEndToEndId")), "code": code,
            "meaning": STATUS[code].meaning,
            "creditor_account": _text(_child(account, "IBAN")) or _text(_child(_child(account, "Othr"), "Id")),
            # .10 wraps the party in Party40Choice (Cdtr/Pty/Nm); earlier versions have Cdtr/Nm
            "name_sent": _text(_child(_child(creditor, "Pty"), "Nm")) or _text(_child(creditor, "Nm")),
            # for a close match the bank puts the account holder's name in AddtlInf (Anlage 3 2.2.6)
            "name_on_account": text if code == CLOSE_MATCH else None,
            "note": None if code == CLOSE_MATCH else text}


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
