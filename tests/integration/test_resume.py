"""A worker that died after a recorded side effect: the next one resumes after it."""

from __future__ import annotations

import json
import subprocess

from test_bus import LEDGER_ADAPTER, relay_route

from esb.runtime.keys import store_key
from esb.store import _HOST, SqliteStore, StepRecord


def dead_owner() -> str:
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{_HOST}:{process.pid}:dead"


def test_a_redelivery_after_a_crash_resumes_after_the_last_recorded_step(bus, run_routes, ledger, uid, tmp_path):
    ledger.enqueue("/archive", 201, {"archive_id": "A-1"})
    steps = f"""\
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt}}
  - label: archive
    to: {{adapter: ledger, operation: archive, into: archived}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""
    # What the crashed worker left: the voucher was posted and recorded, the archive not yet.
    store = SqliteStore(str(tmp_path / "idem.sqlite3"))
    owner = dead_owner()
    key = store_key("C-R", "key")  # keys are typed in the store: "C-R" and 0 never collide
    assert store.claim(f"r-{uid}", key, owner, 600).status == "claimed"
    after_post = {"claim_id": "C-R", "receipt": {"voucher_no": "V-R"}}
    store.record_step(f"r-{uid}", key, owner, StepRecord(0, "create-voucher", {
        "body": json.dumps(after_post), "content_type": "application/json", "headers": {}}, None))
    store.close()
    run_routes({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=ledger.url),
                "routes/r.yaml": relay_route(uid, steps, "idempotency: {key: claim_id}\n")})
    bus.listen(f"seen-{uid}", f"out-{uid}")
    bus.send(f"in-{uid}", "x", b'{"claim_id": "C-R"}')
    [out] = bus.wait_for(f"seen-{uid}", 1)
    assert json.loads(out.body) == {**after_post, "archived": {"archive_id": "A-1"}}
    assert ledger.requests_to("/vouchers") == []
    assert len(ledger.requests_to("/archive")) == 1
