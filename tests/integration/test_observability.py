"""`esb run` as an on-call engineer watches it: /metrics, /healthz and /readyz, one endpoint for
one worker or several, on RabbitMQ."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from integration_helpers import Bus, delete_queues, wait_until, write_project
from prometheus_client.parser import text_string_to_metric_families

from esb.testing.http import StubResponse

ROUTE = """\
name: watch-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
retry: {{attempts: 1}}
steps:
  - label: check
    function: transformers/functions/check.py:check
  - label: out
    publish: {{exchange: out-{uid}, routing_key: done}}
"""
CHECK = """\
from esb.errors import BusinessError

def check(body, headers):
    if body.get("amount") == "bad":
        raise BusinessError("the amount is not a number")
    return body
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a /metrics page."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def project(tmp_path, uid, rabbit_url):
    root = write_project(tmp_path / "p", {"routes/watch.yaml": ROUTE.format(uid=uid),
                                          "transformers/functions/check.py": CHECK})
    yield root
    delete_queues(rabbit_url, uid)


@pytest.fixture
def esb_run(project, rabbit_url, tmp_path):
    started = []

    def start(*options: str, store_url: str | None = None):
        port = free_port()
        env = {**os.environ, "ESB_STORE_KIND": "redis", "ESB_STORE_URL": store_url} if store_url \
            else None
        log = open(tmp_path / f"esb-{len(started)}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "esb.cli.main", "--root", str(project), "run",
                                    "--broker", rabbit_url, "--metrics-listen", f"127.0.0.1:{port}", *options],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
        started.append((process, log))
        return f"http://127.0.0.1:{port}"
    yield start
    for process, log in started:
        process.terminate()
        process.wait(40)
        log.close()


def run_messages(rabbit_url: str, uid: str, base: str, good: int, bad: int) -> dict:
    bus = Bus(rabbit_url)
    try:
        bus.listen(f"out-{uid}", f"out-{uid}")
        for n in range(good):
            bus.send(f"in-{uid}", "x", json.dumps({"amount": "1.00", "n": n}).encode(), message_id=f"m-{uid}-{n}")
        for n in range(bad):
            bus.send(f"in-{uid}", "x", b'{"amount": "bad"}', message_id=f"bad-{uid}-{n}")
        assert len(bus.wait_for(f"out-{uid}", good, 30)) == good
        route = (("route", f"watch-{uid}"),)
        # A worker under a supervisor adds its counts to the files /metrics reads once a second
        # (esb.observability.metrics): wait for every message to be counted and settled.
        settled = {("esb_messages_dead_lettered_total", (("error_class", "business"), *route)): bad,
                   ("esb_messages_received_total", route): good + bad, ("esb_messages_acked_total", route): good,
                   ("esb_messages_in_flight", route): 0}

        def counted():
            found = samples(get(f"{base}/metrics")[1])
            return all(found.get(name) == value for name, value in settled.items()) and found
        return wait_until(counted, 20, "the messages were not all counted")
    finally:
        bus.close()


def test_one_worker_serves_health_readiness_and_the_counts_of_its_messages(esb_run, rabbit_url, uid):
    base = esb_run("--workers", "1")
    assert wait_until(lambda: get(f"{base}/readyz")[0] == 200, 30, "never ready")
    assert get(f"{base}/healthz") == (200, '{"alive": true}')
    ready = json.loads(get(f"{base}/readyz")[1])
    assert ready == {"ready": True, "workers_ready": 1, "workers": 1, "not_ready": []}

    found = run_messages(rabbit_url, uid, base, good=3, bad=1)
    route = ("route", f"watch-{uid}")
    assert found[("esb_messages_received_total", (route,))] == 4
    assert found[("esb_messages_acked_total", (route,))] == 3
    assert found[("esb_step_failures_total", (("error_class", "business"), route, ("step", "check")))] == 1
    assert found[("esb_step_duration_seconds_count", (route, ("step", "check")))] == 3
    assert found[("esb_message_duration_seconds_count", (("outcome", "acked"), route))] == 3
    assert found[("esb_component_up", (("component", f"consumer:watch-{uid}"),))] == 1
    assert found[("esb_messages_in_flight", (route,))] == 0
    # ids are never labels: one series per message would grow without bound
    assert f"m-{uid}" not in get(f"{base}/metrics")[1]


def test_workers_are_counted_on_one_endpoint_of_the_supervisor(esb_run, rabbit_url, uid):
    base = esb_run("--workers", "2")
    ready = wait_until(lambda: (r := get(f"{base}/readyz"))[0] == 200 and json.loads(r[1]), 40, "never ready")
    assert ready["workers_ready"] == 2
    found = run_messages(rabbit_url, uid, base, good=20, bad=2)
    assert found[("esb_messages_acked_total", (("route", f"watch-{uid}"),))] == 20


def test_readiness_says_which_part_does_not_answer(esb_run, uid):
    base = esb_run("--workers", "1", store_url=f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    status, body = wait_until(lambda: (r := get(f"{base}/readyz"))[0] and '"not_ready": ["store"]' in r[1] and r, 30,
                            "readiness never named the store alone")
    assert status == 503
    assert json.loads(body) == {"ready": False, "workers_ready": 0, "workers": 1, "not_ready": ["store"]}
    assert get(f"{base}/healthz")[0] == 200


CALLING_ROUTE = """\
name: call-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
retry: {{attempts: 1}}
steps:
  - label: post
    to: {{adapter: ledger, operation: post_entry}}
"""
LEDGER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 5s
operations:
  post_entry: {{method: POST, path: /entries}}
"""


def test_adapter_calls_are_counted_by_outcome_and_timed(tmp_path, uid, rabbit_url, http_stub):
    http_stub.enqueue("/entries", 503, b"down for maintenance")
    http_stub.set_default(StubResponse(201, {"ok": True}))
    root = write_project(tmp_path / "c", {"routes/call.yaml": CALLING_ROUTE.format(uid=uid),
                                          "adapters/ledger.yaml": LEDGER.format(url=http_stub.url)})
    port = free_port()
    with open(tmp_path / "esb.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "esb.cli.main", "--root", str(root), "run", "--workers", "1",
                                    "--broker", rabbit_url, "--metrics-listen", f"127.0.0.1:{port}"],
                                   stdout=log, stderr=subprocess.STDOUT)
        bus = Bus(rabbit_url)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: get(f"{base}/readyz")[0] == 200, 30, "never ready")
            for n in range(3):
                bus.send(f"in-{uid}", "x", json.dumps({"n": n}).encode(), message_id=f"c-{uid}-{n}")
            labels = (("adapter", "ledger"), ("kind", "rest"), ("operation", "post_entry"))
            found = wait_until(lambda: (f := samples(get(f"{base}/metrics")[1])).get(
                ("esb_adapter_calls_total", (*labels, ("outcome", "ok")))) == 3 and f, 20, "calls not counted")
            assert found[("esb_adapter_calls_total", (*labels, ("outcome", "http_5xx")))] == 1
            assert found[("esb_adapter_call_duration_seconds_count", labels)] == 4
        finally:
            bus.close()
            process.terminate()
            process.wait(40)
            delete_queues(rabbit_url, uid)
