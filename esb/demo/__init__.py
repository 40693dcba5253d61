"""`esb demo`: the sample finance routes end to end on the embedded broker.

Stand-in servers start in this process: a ledger that recognises repeats by Idempotency-Key,
the OA voucher archive over SOAP, the bank's SFTP server (OpenSSH's sshd, when installed) and
the bank's statement API. The routes in routes/ run unchanged against them, the webhook routes
served as `esb run` serves them; each scenario says what should happen, makes it happen the way
the real system would (OA publishes or posts a signed webhook, the bank drops a file, a schedule
reaches its fire time), and checks it.
Everything the demo sends is made here (samples.py), so it runs from any checkout.

    samples.py    expense claims, a payment order, a pain.002, MT940, camt.053 and REST statements
    scenarios.py  what each scenario does and expects
    run.py        the stand-ins and the runtime; run_demo returns an Outcome per scenario
"""

from esb.demo.run import NOT_RUN, PENDING, DeadLetter, Outcome, run_demo
from esb.demo.scenarios import Scenario, scenarios

__all__ = ["NOT_RUN", "PENDING", "DeadLetter", "Outcome", "Scenario", "run_demo", "scenarios"]
