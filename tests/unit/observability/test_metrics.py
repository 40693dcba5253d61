"""The series counted per message: counted in plain Python, flushed into prometheus_client's, and
never late for a scrape of this process nor lost when a supervised worker exits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from esb.observability.metrics import SECONDS, MetricsMiddleware, _Observed

ROOT = Path(__file__).resolve().parents[3]


def one_message(metrics: MetricsMiddleware, route: str, outcome: str = "acked", filtered: bool = False):
    attempt = SimpleNamespace(route=route, marks=None)
    metrics.before_message(attempt)
    metrics.after_step(attempt, SimpleNamespace(label="check"), None)
    if outcome == "acked":
        metrics.on_ack(attempt, outputs=0 if filtered else 1, filtered=filtered)
    metrics.after_message(attempt, outcome=outcome)
    return attempt


def test_a_scrape_of_this_process_shows_every_message_counted_so_far():
    metrics, route = MetricsMiddleware(), {"route": "scraped-at-once"}
    one_message(metrics, "scraped-at-once")
    one_message(metrics, "scraped-at-once", filtered=True)
    one_message(metrics, "scraped-at-once", outcome="dead_lettered")
    metrics.before_message(SimpleNamespace(route="scraped-at-once", marks=None))  # still in flight
    value = REGISTRY.get_sample_value
    assert value("esb_messages_received_total", route) == 4
    assert value("esb_messages_acked_total", route) == 2
    assert value("esb_messages_filtered_total", route) == 1
    assert value("esb_messages_in_flight", route) == 1
    assert value("esb_step_duration_seconds_count", {**route, "step": "check"}) == 3
    assert value("esb_message_duration_seconds_count", {**route, "outcome": "acked"}) == 2
    assert value("esb_message_duration_seconds_count", {**route, "outcome": "dead_lettered"}) == 1


def test_a_route_that_never_filtered_shows_no_filtered_series():
    one_message(MetricsMiddleware(), "never-filters")
    assert REGISTRY.get_sample_value("esb_messages_acked_total", {"route": "never-filters"}) == 1
    assert REGISTRY.get_sample_value("esb_messages_filtered_total", {"route": "never-filters"}) is None


def test_observations_added_at_once_read_as_if_observed_one_by_one():
    registry = CollectorRegistry()
    one_by_one = Histogram("one_by_one_seconds", "", buckets=SECONDS, registry=registry)
    at_once = Histogram("at_once_seconds", "", buckets=SECONDS, registry=registry)
    seconds = [0, 0.0001, 0.0005, 0.0006, 0.003, 1, 1.5, 60, 61, 3600, 0.0005, 0.2]  # bounds, between, beyond
    pending = _Observed(at_once)
    for s in seconds:
        one_by_one.observe(s)
        pending.observe(s)
    pending.add(pending.take())
    assert pending.take() is None  # taken once
    samples = {name: [(s.name.split("_seconds")[1], s.labels, s.value) for s in registry.collect()
                      if s.name == name for s in s.samples if not s.name.endswith("_created")]
               for name in ("one_by_one_seconds", "at_once_seconds")}
    assert samples["one_by_one_seconds"] == samples["at_once_seconds"]
    assert ("_count", {}, len(seconds)) in samples["at_once_seconds"]


WORKER = """
import sys, time
from types import SimpleNamespace
from esb.observability.metrics import MetricsMiddleware
metrics = MetricsMiddleware()
for _ in range(5):
    attempt = SimpleNamespace(route="supervised", marks=None)
    metrics.before_message(attempt)
    metrics.on_ack(attempt, outputs=1, filtered=False)
    metrics.after_message(attempt, outcome="acked")
metrics.before_message(SimpleNamespace(route="supervised", marks=None))  # in flight until it exits
if sys.argv[1] == "wait":
    time.sleep(60)
"""


def supervised(tmp_path: Path, how: str) -> subprocess.Popen:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKER), how], env=env, cwd=ROOT)


def read(directory: Path, name: str) -> float | None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(directory))
    return registry.get_sample_value(name, {"route": "supervised"})


def test_a_supervised_worker_flushes_every_second(tmp_path):
    worker = supervised(tmp_path, "wait")
    try:
        deadline = time.monotonic() + 10
        while read(tmp_path, "esb_messages_acked_total") != 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert read(tmp_path, "esb_messages_acked_total") == 5
        assert read(tmp_path, "esb_messages_received_total") == 6
        assert read(tmp_path, "esb_messages_in_flight") == 1
    finally:
        worker.kill()
        worker.wait(10)


def test_a_supervised_worker_that_exits_at_once_loses_no_count(tmp_path):
    assert supervised(tmp_path, "exit").wait(30) == 0
    assert read(tmp_path, "esb_messages_acked_total") == 5
    assert read(tmp_path, "esb_messages_received_total") == 6
