"""Hot reload under load: `esb run` takes route changes while messages flow, as an operator makes them.

A publisher sends a steady stream to a route that posts each message to the stand-in ledger and
publishes the result. Meanwhile the route's mapping changes, a route is added, a broken route file
is written (refused: the running routes go on) and then fixed, and the added route is removed.
Counted at the end: lost 0, duplicated ledger effects 0, and every message published after the
mapping's swap was handled by the new mapping.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from integration_helpers import Bus, delete_queues, wait_until, write_project

from esb.testing.ledger import StandInLedger

MESSAGES = 400
PER_SECOND = 80

LEDGER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 5s
idempotency_header: Idempotency-Key
operations:
  post_entries: {{method: POST, path: /entries}}
"""
ROUTE = """\
name: {name}
source: {{exchange: {exchange}, binding_key: "#"}}
concurrency: 4
idempotency: {{key: n}}
retry: {{attempts: 5, in_process: 1, backoff: {{initial: 200ms, multiplier: 2, max: 2s}}}}
steps:
  - label: shape
    map: transformers/mappings/shape.yaml
  - label: post
    to: {{adapter: ledger, operation: post_entries, into: receipt}}
  - publish: {{exchange: {out}, routing_key: done}}
"""
MAPPING = """\
output:
  n: n
  version: "'{version}'"
"""
CONFIG = "reload: {every: 200ms}\nmetrics: {listen: 'off'}\n"


def reload_status(root: Path) -> dict | None:
    from esb.runtime.reload import statuses
    found = statuses(root)
    return found[0] if found else None


def esb_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "esb.cli.main", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60)


def esb_reload(root: Path) -> subprocess.CompletedProcess:
    return esb_cli(root, "reload", "--wait", "30")


@pytest.fixture
def ledger():
    with StandInLedger() as stand_in:
        yield stand_in


def test_routes_change_under_load_with_nothing_lost_or_done_twice(tmp_path, uid, rabbit_url, ledger):
    root = write_project(tmp_path / "p", {
        "config/esb.yaml": CONFIG,
        "adapters/ledger.yaml": LEDGER.format(url=ledger.url),
        "routes/main.yaml": ROUTE.format(name=f"main-{uid}", exchange=f"in-{uid}", out=f"out-{uid}"),
        "transformers/mappings/shape.yaml": MAPPING.format(version="v1")})
    log = open(tmp_path / "esb.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "esb.cli.main", "--root", str(root), "run", "--workers", "1",
                                "--broker", rabbit_url], stdout=log, stderr=subprocess.STDOUT)
    bus = Bus(rabbit_url)
    sent: dict[int, float] = {}
    try:
        bus.listen(f"out-{uid}", f"out-{uid}")
        bus.listen(f"out2-{uid}", f"out2-{uid}")
        first = wait_until(lambda: reload_status(root), 30, "esb run never started")
        assert first["outcome"] == "loaded"

        def publish():
            for n in range(MESSAGES):
                sent[n] = time.time()
                bus.send(f"in-{uid}", "x", json.dumps({"n": n}).encode(), message_id=f"m-{uid}-{n}")
                time.sleep(1 / PER_SECOND)
        publisher = threading.Thread(target=publish)
        publisher.start()

        # 1. a step's mapping changes: the route is swapped between messages
        time.sleep(0.8)
        write_project(root, {"transformers/mappings/shape.yaml": MAPPING.format(version="v2")})
        swapped = wait_until(lambda: (s := reload_status(root)) and s["outcome"] == "reloaded" and s, 20,
                             "the mapping change was not reloaded")
        assert swapped["swapped"] == [f"main-{uid}"]
        swapped_at = swapped["at"]

        # 2. a new route starts
        write_project(root, {"routes/second.yaml": ROUTE.format(name=f"second-{uid}", exchange=f"in2-{uid}",
                                                                 out=f"out2-{uid}")})
        wait_until(lambda: f"second-{uid}" in (reload_status(root) or {}).get("routes", []), 20,
                   "the new route did not start")
        bus.send(f"in2-{uid}", "x", json.dumps({"n": 10_000}).encode(), message_id=f"s-{uid}")
        assert len(bus.wait_for(f"out2-{uid}", 1, 20)) == 1

        # 3. a broken file is refused as a whole; the running routes go on; `esb reload` says why
        write_project(root, {"routes/broken.yaml": "name: broken\nsource: {exchange: x}\nsteps:\n  - nope: {}\n"})
        refused = wait_until(lambda: (s := reload_status(root)) and s["outcome"] == "refused" and s, 20,
                             "the broken file was not refused")
        assert any(error.startswith("routes/broken.yaml:4:") for error in refused["errors"])
        answer = esb_reload(root)
        assert answer.returncode == 1
        assert "refused; the running routes go on" in answer.stderr and "routes/broken.yaml:4:" in answer.stderr
        shown = esb_cli(root, "status", "--broker", rabbit_url)
        assert "was refused" in shown.stdout and "routes/broken.yaml:4:" in shown.stdout
        audited = json.loads(esb_cli(root, "audit", "--json").stdout)
        assert [(a["action"], a["outcome"]) for a in audited] == [("reload", "refused")]
        assert "routes/broken.yaml:4:" in json.dumps(audited[0]["result"])

        # 4. its fix is taken
        write_project(root, {"routes/broken.yaml": ROUTE.format(name=f"third-{uid}", exchange=f"in3-{uid}",
                                                                 out=f"out-{uid}")})
        wait_until(lambda: (s := reload_status(root)) and s["outcome"] == "reloaded"
                   and f"third-{uid}" in s["routes"], 20, "the fix was not reloaded")

        # 5. a route is removed
        (root / "routes" / "second.yaml").unlink()
        wait_until(lambda: f"second-{uid}" not in (reload_status(root) or {}).get("routes", [f"second-{uid}"]), 20,
                   "the removed route still runs")

        publisher.join(60)
        outputs = bus.wait_for(f"out-{uid}", MESSAGES, 60)
        bus.settle(1.0)
        outputs = bus.received[f"out-{uid}"]
    finally:
        bus.close()
        process.terminate()
        process.wait(40)
        log.close()
        delete_queues(rabbit_url, uid)

    bodies = [json.loads(d.body) for d in outputs]
    arrived = Counter(body["n"] for body in bodies)
    effects = Counter(json.loads(body)["n"] for _, path, body in ledger.effects.values()
                      if path == "/entries" and json.loads(body)["n"] < MESSAGES)
    assert [n for n in range(MESSAGES) if arrived[n] == 0] == []          # lost: 0
    assert [n for n, count in arrived.items() if count > 1] == []         # duplicate outputs: 0
    assert [n for n, count in effects.items() if count > 1] == []         # duplicated effects: 0
    late_v1 = [b["n"] for b in bodies if b["version"] == "v1" and sent[b["n"]] > swapped_at]
    assert late_v1 == []                                                   # after the swap: the new mapping
    assert {b["version"] for b in bodies} == {"v1", "v2"}
