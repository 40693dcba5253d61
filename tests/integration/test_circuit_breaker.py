"""An endpoint that fails for minutes (issue 13, point 4): the stand-in ledger refuses every call
for 30 s while 300 messages arrive. The ledger adapter's circuit breaker opens, the route stops
taking messages (its consumer is cancelled, the queue fills), no retry is burnt into the
dead-letter queue (the route allows only 3 attempts, 200 ms apart: without the breaker every
message would be dead-lettered within seconds), and once the ledger answers again every message
is posted exactly once."""

from __future__ import annotations

import json
import threading
import time

import pytest
from integration_helpers import write_project
from prometheus_client import REGISTRY

from esb.loading.project import load_project
from esb.observability.metrics import MetricsMiddleware
from esb.runtime import names
from esb.runtime.connect import make_broker
from esb.runtime.middleware import LogMiddleware
from esb.runtime.runtime import Runtime
from esb.store import SqliteStore
from esb.testing.http import StubResponse
from esb.testing.ledger import StandInLedger

pytestmark = pytest.mark.timeout(90)

MESSAGES, OUTAGE = 300, 30.0

LEDGER = """\
name: ledger-{uid}
kind: rest
base_url: {url}
timeout: 5s
rate_limit: {{per_second: 500, burst: 100}}
circuit_breaker: {{failures: 5, within: 30s, open_for: 5s}}
operations:
  create_voucher: {{method: POST, path: /vouchers}}
"""

ROUTE = """\
name: cb-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
concurrency: 8
idempotency: {{key: claim_id}}
retry: {{attempts: 3, in_process: 1, backoff: {{initial: 200ms, multiplier: 2, max: 1s}}}}
steps:
  - label: post-voucher
    to: {{adapter: ledger-{uid}, operation: create_voucher, into: receipt}}
  - publish: {{exchange: out-{uid}, routing_key: voucher}}
"""


class Outage:
    """The stand-in ledger, refusing every call with 503 while `down` is set."""

    def __init__(self, ledger: StandInLedger):
        self.down = threading.Event()
        self.refused = 0
        handle = ledger._handle

        def maybe_refuse(request):
            if self.down.is_set():
                self.refused += 1
                return StubResponse(503, {"error": "ledger down for maintenance"})
            return handle(request)
        ledger.server.set_default(maybe_refuse)


def breaker_state(adapter: str) -> float | None:
    return REGISTRY.get_sample_value("esb_adapter_circuit_state", {"adapter": adapter})


def test_a_ledger_down_for_30s_under_load_dead_letters_nothing_and_posts_every_message_once(
        rabbit_url, rabbit_bus, tmp_path, uid, stand_in):
    outage = Outage(stand_in)
    project = load_project(write_project(tmp_path, {
        f"adapters/ledger-{uid}.yaml": LEDGER.format(uid=uid, url=stand_in.url),
        f"routes/cb-{uid}.yaml": ROUTE.format(uid=uid)}), {})
    route, adapter = f"cb-{uid}", f"ledger-{uid}"
    rabbit_bus.listen(f"out-{uid}", f"out-{uid}")
    runtime = Runtime(project, make_broker(rabbit_url), store=SqliteStore(str(tmp_path / "idem.sqlite3")),
                      middleware=[LogMiddleware(), MetricsMiddleware()])
    runtime.start()
    try:
        outage.down.set()
        started = time.monotonic()
        for n in range(MESSAGES):
            rabbit_bus.send(f"in-{uid}", "voucher", json.dumps(
                {"claim_id": f"C{n:04d}", "voucher_no": f"V{n:04d}", "entries": []}).encode())
        states, consumers, depths = set(), set(), []
        while time.monotonic() - started < OUTAGE:  # watch the outage from outside
            states.add(breaker_state(adapter))
            depth = runtime.broker.queue_depth(route)
            if depth is not None:
                depths.append(depth[0])
                consumers.add(depth[1])
            time.sleep(0.2)
        outage.down.clear()

        received = rabbit_bus.wait_for(f"out-{uid}", MESSAGES, timeout=45)
        rabbit_bus.settle(1.0)
        received = rabbit_bus.received[f"out-{uid}"]
        dead = runtime.broker.queue_depth(names.dead_letter_queue(route))
    finally:
        runtime.stop(drain_timeout=10)

    assert dead is not None and dead[0] == 0, f"{dead[0]} messages were dead-lettered"
    posted = sorted(v["voucher_no"] for v in stand_in.vouchers.values())
    assert posted == [f"V{n:04d}" for n in range(MESSAGES)]  # each voucher once, none lost
    assert len(received) == MESSAGES
    assert 1.0 in states, "the breaker gauge never showed the ledger's breaker open"
    assert 0 in consumers, "the route kept consuming while the ledger's breaker was open"
    assert max(depths) > MESSAGES - 50, "the messages did not wait in the route's queue"
    assert outage.refused < 60, f"the ledger was called {outage.refused} times while down: the breaker did not hold"
    assert breaker_state(adapter) == 0.0
