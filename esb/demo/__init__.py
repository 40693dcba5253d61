"""`esb demo`: the sample finance routes end to end on the embedded broker.

Stand-in servers start in this process: a ledger that recognises repeats by Idempotency-Key,
the OA voucher archive over SOAP, and the bank's SFTP server (OpenSSH's sshd, when installed).
The routes in routes/ run unchanged against them; each scenario says what should happen, makes
it happen the way the real system would (OA publishes, the bank drops a file), and checks it.
Everything the demo sends is made here (samples.py), so it runs from any checkout.

    samples.py    expense claims, a payment order, a pain.002, MT940 and camt.053 statements
    scenarios.py  what each scenario does and expects
    run.py        the stand-ins and the runtime; run_demo returns an Outcome per scenario
"""

from esb.demo.run import NOT_RUN, PENDING, DeadLetter, Outcome, run_demo
from esb.demo.scenarios import Scenario, scenarios

__all__ = ["NOT_RUN", "PENDING", "DeadLetter", "Outcome", "Scenario", "run_demo", "scenarios"]
