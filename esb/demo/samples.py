"""What the demo's publishers and bank send: expense claims, a payment order, the bank's pain.002,
and account statements (MT940, camt.053.001.02) built here so that they reconcile, or not, on purpose."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from xml.sax.saxutils import escape

TRAVEL = [("6602.03", "差旅费-上海至北京高铁往返", "1106.00"), ("6602.03", "差旅费-北京住宿3晚", "1680.00")]


def expense(claim_id: str, lines: list[tuple[str, str, str]]) -> dict:
    """An OA expense claim, approved: (account, description, amount) per line."""
    items = [{"account": a, "description": d, "amount": Decimal(m)} for a, d, m in lines]
    return {"claim_id": claim_id, "employee": {"id": "E01024", "name": "张伟"}, "department": "华东销售部",
            "approved_at": "2026-11-20T10:12:00+08:00", "currency": "CNY", "lines": items,
            "total": sum((i["amount"] for i in items), Decimal("0"))}


def rest_statement(day: str) -> dict:
    """The bank statement API's answer for `as_of=day`: the last business day's booked entries."""
    return {"account": "6222020200001234567", "as_of": day, "currency": "CNY", "opening": Decimal("152340.18"),
            "entries": [{"ref": "HX20261207-001", "direction": "credit", "amount": Decimal("86500.00"),
                         "text": "货款 华东经销商 2026-11"},
                        {"ref": "HX20261207-002", "direction": "debit", "amount": Decimal("12.50"),
                         "text": "跨行汇款手续费"}],
            "closing": Decimal("238827.68")}


PAYMENT_ORDER = {
    "order_id": "PO-DEMO-0001", "created_at": "2026-11-20T09:15:00+01:00", "execution_date": "2026-11-23",
    "debtor": {"name": "Huaxin Trading Europe GmbH", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"},
    "payments": [{"end_to_end_id": "INV-2026-0518", "amount": Decimal("1250.00"), "currency": "EUR",
                  "creditor": {"name": "Logistique Rhone SARL", "iban": "FR1420041010050500013M02606",
                               "bic": "PSSTFRPPLYO"}, "remittance": "Facture 2026-0518"}]}


# The bank's answer to the payment file the demo uploads: one transaction rejected, account closed.
PAIN002_REJECTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>COBADEFF-STS-20261123-0001</MsgId><CreDtTm>2026-11-23T07:30:00+01:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts><OrgnlMsgId>ESB-PO-DEMO-0001</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.03</OrgnlMsgNmId>
      <GrpSts>RJCT</GrpSts></OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts><OrgnlPmtInfId>PO-DEMO-0001</OrgnlPmtInfId><PmtInfSts>RJCT</PmtInfSts>
      <TxInfAndSts><OrgnlEndToEndId>INV-2026-0518</OrgnlEndToEndId><TxSts>RJCT</TxSts>
        <StsRsnInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>Account closed</AddtlInf></StsRsnInf></TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>
"""


@dataclasses.dataclass(frozen=True)
class Entry:
    """A booked movement on the account: positive is a credit, negative a debit."""

    bank_ref: str
    amount: Decimal
    text: str


@dataclasses.dataclass(frozen=True)
class Statement:
    """One day's account statement; its closing balance is the opening plus the entries unless
    `closing` says otherwise (a statement that does not reconcile)."""

    statement_id: str
    account: str                 # IBAN
    currency: str
    day: str                     # YYYY-MM-DD
    opening: Decimal
    entries: tuple[Entry, ...]
    closing: Decimal | None = None

    @property
    def closing_balance(self) -> Decimal:
        return self.opening + sum((e.amount for e in self.entries), Decimal("0")) if self.closing is None \
            else self.closing


ACCOUNT = "DE89370400440532013000"
MT940_STATEMENT = Statement("DEMO-MT940-1120", ACCOUNT, "EUR", "2026-11-20", Decimal("18250.00"), (
    Entry("B26112000001", Decimal("4800.00"), "Zahlung Rechnung 2026-0493 Kunde Meier GmbH"),
    Entry("B26112000002", Decimal("-1250.00"), "Facture 2026-0518 Logistique Rhone SARL"),
    Entry("B26112000003", Decimal("-35.40"), "Kontofuehrungsgebuehr November")))
CAMT053_STATEMENT = Statement("DEMO-CAMT-1121", ACCOUNT, "EUR", "2026-11-21", MT940_STATEMENT.closing_balance, (
    Entry("B26112100001", Decimal("2600.00"), "Zahlung Rechnung 2026-0501 Weber und Soehne AG"),
    Entry("B26112100002", Decimal("-480.00"), "Miete Lager Dezember"),
    Entry("B26112100003", Decimal("-12.90"), "SEPA-Entgelte November")))
# Off by 0.05: the bank's closing balance is not opening + entries, so nothing may be posted.
UNRECONCILED_STATEMENT = dataclasses.replace(CAMT053_STATEMENT, statement_id="DEMO-CAMT-1122", day="2026-11-22",
                                             closing=CAMT053_STATEMENT.closing_balance + Decimal("0.05"))


# --- SWIFT MT940 ---------------------------------------------------------------------------------

def mt940(stmt: Statement) -> bytes:
    """The statement as an MT940 file: :60F: + each :61: (with its :86: text) = :62F:."""
    day = stmt.day[2:].replace("-", "")   # YYMMDD
    lines = [f":20:{stmt.statement_id}", f":25:{stmt.account}", ":28C:1/1",
             f":60F:{_mt_balance(stmt.opening, day, stmt.currency)}"]
    for entry in stmt.entries:
        mark = "C" if entry.amount >= 0 else "D"
        lines += [f":61:{day}{day[2:]}{mark}{_mt_amount(entry.amount)}NTRFNONREF//{entry.bank_ref}",
                  f":86:{entry.text}"]
    lines += [f":62F:{_mt_balance(stmt.closing_balance, day, stmt.currency)}", "-"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _mt_balance(amount: Decimal, day: str, currency: str) -> str:
    return f"{'C' if amount >= 0 else 'D'}{day}{currency}{_mt_amount(amount)}"


def _mt_amount(amount: Decimal) -> str:
    return f"{abs(amount):.2f}".replace(".", ",")  # MT940 writes a decimal comma, no sign


# --- ISO 20022 camt.053.001.02 ---------------------------------------------------------------------

def camt053(stmt: Statement) -> bytes:
    """The statement as a camt.053.001.02 document, valid against the ISO schema."""
    entries = "".join(_camt_entry(e, stmt) for e in stmt.entries)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>{stmt.statement_id}-MSG</MsgId><CreDtTm>{stmt.day}T18:00:00+01:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>{stmt.statement_id}</Id>
      <CreDtTm>{stmt.day}T18:00:00+01:00</CreDtTm>
      <Acct><Id><IBAN>{stmt.account}</IBAN></Id><Ccy>{stmt.currency}</Ccy></Acct>
{_camt_balance("OPBD", stmt.opening, stmt)}{_camt_balance("CLBD", stmt.closing_balance, stmt)}{entries}    </Stmt>
  </BkToCstmrStmt>
</Document>
""".encode()


def _camt_balance(code: str, amount: Decimal, stmt: Statement) -> str:
    return (f"      <Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>{_camt_amount(amount, stmt.currency)}"
            f"<Dt><Dt>{stmt.day}</Dt></Dt></Bal>\n")


def _camt_entry(entry: Entry, stmt: Statement) -> str:
    family = ("RCDT", "ESCT") if entry.amount >= 0 else ("ICDT", "ESCT")
    return (f"      <Ntry><NtryRef>{entry.bank_ref}</NtryRef>{_camt_amount(entry.amount, stmt.currency)}"
            f"<Sts>BOOK</Sts><BookgDt><Dt>{stmt.day}</Dt></BookgDt><ValDt><Dt>{stmt.day}</Dt></ValDt>"
            f"<AcctSvcrRef>{entry.bank_ref}</AcctSvcrRef>"
            f"<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>{family[0]}</Cd><SubFmlyCd>{family[1]}</SubFmlyCd></Fmly></Domn>"
            f"</BkTxCd><NtryDtls><TxDtls><RmtInf><Ustrd>{escape(entry.text)}</Ustrd></RmtInf></TxDtls></NtryDtls>"
            f"</Ntry>\n")


def _camt_amount(amount: Decimal, currency: str) -> str:
    indicator = "CRDT" if amount >= 0 else "DBIT"
    return f'<Amt Ccy="{currency}">{abs(amount):.2f}</Amt><CdtDbtInd>{indicator}</CdtDbtInd>'
