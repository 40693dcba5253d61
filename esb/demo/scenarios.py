"""The demo's scenarios: what each makes happen (OA publishes, the bank drops a file) and what it expects."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from esb.demo import samples

if TYPE_CHECKING:
    from esb.demo.run import Demo

OA = "oa-expense-to-voucher"
OA_WEBHOOK = "oa-expense-webhook"
STATEMENT_PULL = "bank-statement-pull"


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    route: str
    expect: str                                   # done, dead, skipped, review, uploaded, pulled
    act: Callable[[Demo], str]                    # makes it happen; returns the message id
    key: Callable[[str], str] = lambda message_id: message_id   # the idempotency key to look up
    needs_sftp: bool = False


def _claim(claim_id: str, lines: list[tuple[str, str, str]], before: Callable[[Demo], None] | None = None):
    def act(stage: Demo) -> str:
        if before:
            before(stage)
        return stage.publish("oa.events", "expense.approved", samples.expense(claim_id, lines), f"oa-{claim_id}")
    return act


def _claim_key(claim_id: str) -> Callable[[str], str]:
    return lambda _: claim_id


def scenarios() -> list[Scenario]:
    travel = samples.TRAVEL
    return [
        Scenario("an approved claim becomes a voucher, archived in OA", OA, "done",
                 _claim("EXP-DEMO-0001", travel), key=_claim_key("EXP-DEMO-0001")),
        Scenario("the ledger answers 503 three times; the retry posts it once", OA, "done",
                 _claim("EXP-DEMO-0002", travel, lambda s: s.ledger.fail_next("/vouchers", 503, times=3)),
                 key=_claim_key("EXP-DEMO-0002")),
        Scenario("the ledger refuses account 9999 (422): dead-lettered with the reason", OA, "dead",
                 _claim("EXP-DEMO-0003", [("9999", "unknown account", "88.00")])),
        Scenario("the OA archive faults (Client): the voucher is cancelled, then dead-lettered", OA, "dead",
                 _claim("EXP-DEMO-0004", travel, lambda s: s.archive.fail_next("Client", "claim is closed"))),
        Scenario("after the fix, that dead letter is replayed: a new voucher, posted once, archived", OA, "done",
                 lambda s: s.replay(OA, "oa-EXP-DEMO-0004"), key=_claim_key("EXP-DEMO-0004")),
        Scenario("a claim above 50000 also goes to finance review", OA, "review",
                 _claim("EXP-DEMO-0005", [("6601.08", "经销商大会会务费", "56800.00")]),
                 key=_claim_key("EXP-DEMO-0005")),
        Scenario("OA publishes the first claim again: skipped, never posted twice", OA, "skipped",
                 lambda s: s.publish("oa.events", "expense.approved", samples.expense("EXP-DEMO-0001", travel),
                                     "oa-EXP-DEMO-0001-again"), key=_claim_key("EXP-DEMO-0001")),
        Scenario("an ERP payment order becomes a pain.001 file in the bank's SFTP outbox",
                 "payment-order-to-pain001", "uploaded",
                 lambda s: s.publish("erp.events", "payment.order.approved", samples.PAYMENT_ORDER,
                                     "erp-PO-DEMO-0001"),
                 key=_claim_key("PO-DEMO-0001"), needs_sftp=True),
        Scenario("the bank's pain.002 rejects it (AC04): the order is updated in the ledger",
                 "pain002-to-payment-status", "done",
                 lambda s: s.drop_file("/status/pain002-0001.xml", samples.PAIN002_REJECTED), needs_sftp=True),
        Scenario("the bank drops an MT940 statement on SFTP: reconciled, entries posted", "mt940-to-ledger", "done",
                 lambda s: s.drop_file("/inbox/DEMO-MT940-1120.sta", samples.mt940(samples.MT940_STATEMENT)),
                 needs_sftp=True),
        Scenario("the bank drops a camt.053 statement on SFTP: reconciled, entries posted", "camt053-to-ledger",
                 "done",
                 lambda s: s.drop_file("/inbox/DEMO-CAMT-1121.xml", samples.camt053(samples.CAMT053_STATEMENT)),
                 needs_sftp=True),
        Scenario("a statement that does not reconcile is dead-lettered (business)", "camt053-to-ledger", "dead",
                 lambda s: s.drop_file("/inbox/DEMO-CAMT-1122.xml", samples.camt053(samples.UNRECONCILED_STATEMENT)),
                 needs_sftp=True),
        Scenario("OA posts a signed webhook: answered 202 once queued, the voucher posted once", OA_WEBHOOK, "done",
                 lambda s: s.post_webhook(OA_WEBHOOK, samples.expense("EXP-DEMO-0006", travel), "oa-delivery-0006"),
                 key=_claim_key("EXP-DEMO-0006")),
        Scenario("Monday 08:00 Beijing time, a working day: the statement is pulled and published", STATEMENT_PULL,
                 "pulled", lambda s: s.fire_schedule(STATEMENT_PULL, "2026-12-07T08:00:00+08:00")),
    ]
