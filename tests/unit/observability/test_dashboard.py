"""The Grafana dashboard in deploy/ queries only metrics esb serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

import esb.observability.health  # noqa: F401 - registers the health gauges
import esb.observability.metrics  # noqa: F401 - registers the message metrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana-esb-dashboard.json"
NAME = re.compile(r"\b(esb_[a-z_]+)")


def served_names() -> set[str]:
    """Every sample name /metrics can show: families as served, with a histogram's _bucket/_sum/_count."""
    text = generate_latest(REGISTRY).decode()
    names = set(re.findall(r"^# TYPE (esb_[a-z_]+) (\w+)", text, re.M))
    found = set()
    for name, kind in names:
        found.add(name)
        if kind == "histogram":
            found.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return found


def queried_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {name for expr in expressions for name in NAME.findall(expr)}


def test_every_metric_the_dashboard_queries_is_served():
    queried = queried_names()
    assert len(queried) >= 12
    assert queried - served_names() == set()


def test_the_dashboard_shows_rates_errors_dead_letters_latency_and_adapters():
    titles = " ".join(p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]).lower()
    for word in ("per second", "dead letter", "dead-letter queue depth", "latency", "adapter"):
        assert word in titles
