"""What each scenario of `esb demo` must come out as, written here apart from the demo itself: a
scenario whose own expectation drifts, or a demo that stops checking, still fails a test."""

from __future__ import annotations

import dataclasses

from esb.demo import Outcome


@dataclasses.dataclass(frozen=True)
class Expected:
    result: str
    effects: tuple[str, ...] = ()              # "METHOD /path" of each ledger effect, in order
    ledger_requests: int | None = None         # requests carrying the message id; None: not checked
    dead_letter: tuple[str, str, str] | None = None   # step, error class, compensation
    reason: str = ""                           # a piece of the dead letter's reason
    entries_posted: int = 0
    outbox: tuple[str, ...] = ()
    erp_told: bool = False
    http_status: int | None = None             # what the webhook's sender was answered
    bank_requests: tuple[str, ...] = ()


EXPECTED = {
    "an approved claim becomes a voucher, archived in OA":
        Expected("done", ("POST /vouchers",), 1),
    "the ledger answers 503 three times; the retry posts it once":
        Expected("done", ("POST /vouchers",), 4),
    "the ledger refuses account 9999 (422): dead-lettered with the reason":
        Expected("dead", (), 1, ("create-voucher", "permanent", "none"), "HTTP 422"),
    "the OA archive faults (Client): the voucher is cancelled, then dead-lettered":
        Expected("dead", ("POST /vouchers", "DELETE /vouchers/OA-EXP-DEMO-0004"), 2,
                 ("archive-voucher", "permanent", "ok"), "claim is closed"),
    "after the fix, that dead letter is replayed: a new voucher, posted once, archived":
        Expected("done", ("POST /vouchers",), 3),
    "a claim above 50000 also goes to finance review":
        Expected("review", ("POST /vouchers",), 1),
    "OA publishes the first claim again: skipped, never posted twice":
        Expected("skipped", (), 0),
    "an ERP payment order becomes a pain.001 file in the bank's SFTP outbox":
        Expected("uploaded", (), 0, outbox=("erp-PO-DEMO-0001.xml",), erp_told=True),
    "the bank's pain.002 rejects it (AC04): the order is updated in the ledger":
        Expected("done", ("PATCH /payment-orders/PO-DEMO-0001",), 1),
    "the bank drops an MT940 statement on SFTP: reconciled, entries posted":
        Expected("done", ("POST /entries",), 1, entries_posted=3),
    "the bank drops a camt.053 statement on SFTP: reconciled, entries posted":
        Expected("done", ("POST /entries",), 1, entries_posted=3),
    "a statement that does not reconcile is dead-lettered (business)":
        Expected("dead", (), 0, ("reconcile", "business", "none"), "does not reconcile"),
    "OA posts a signed webhook: answered 202 once queued, the voucher posted once":
        Expected("done", ("POST /vouchers",), 1, http_status=202),
    "Monday 08:00 Beijing time, a working day: the statement is pulled and published":
        Expected("pulled", (), 0, bank_requests=("GET /statements?as_of=2026-12-07",)),
}


def mismatches(outcome: Outcome, expected: Expected) -> list[str]:
    """Each way the outcome differs from what was expected, as a sentence; [] when it matches."""
    found = []

    def differs(what: str, want, got) -> None:
        if want != got:
            found.append(f"{what}: expected {want!r}, got {got!r}")

    differs("result", expected.result, outcome.result)
    differs("ledger effects", expected.effects, outcome.effects)
    if expected.ledger_requests is not None:
        differs("ledger requests", expected.ledger_requests, outcome.ledger_requests)
    letter = outcome.dead_letter
    differs("dead letter (step, error class, compensation)", expected.dead_letter,
            letter and (letter.step, letter.error_class, letter.compensation))
    if expected.reason and expected.reason not in ((letter and letter.reason) or ""):
        found.append(f"dead letter reason: expected it to say {expected.reason!r}, got {letter and letter.reason!r}")
    differs("statement entries posted", expected.entries_posted, outcome.entries_posted)
    differs("files in the bank's outbox", expected.outbox, outcome.outbox)
    differs("ERP told the order was submitted", expected.erp_told, outcome.erp_told)
    differs("webhook answered", expected.http_status, outcome.http_status)
    differs("bank API requests", expected.bank_requests, outcome.bank_requests)
    return found
