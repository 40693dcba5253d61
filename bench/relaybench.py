"""Scenario 1: a JSON→XML relay of preloaded messages, esb (`esb run --workers N`) against two
hand-written pika relays: bench/relay.py (esb's own transform) and bench/leanrelay.py (orjson +
lxml: the limit). All read the same kind of preloaded queue and publish through the default
exchange straight to the sink queue (no exchange hop for anyone);
msg/s = count / (first consumption → output queue depth == count)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from bench import common, profiling
from esb.loading.project import load_project
from esb.runtime.runtime import project_topology

ROUTE = """\
name: {name}
source: {{exchange: {name}.in, binding_key: "#"}}
concurrency: {concurrency}
steps:
  - label: to-xml
    json_to_xml: {{root: Voucher}}
  - label: out
    publish: {{exchange: "", routing_key: {name}.sink}}
"""


@dataclass
class Run:
    what: str
    count: int
    seconds: float
    preload_seconds: float
    details: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def relay_project(url: str, concurrency: int = 16, tag: str = "bx"):
    """A temp project with the relay route; returns (root, route name, its topology, output queue)."""
    name = f"bench-{tag}-{common.uid()}"
    root = common.write_project({"routes/relay.yaml": ROUTE.format(name=name, concurrency=concurrency),
                                 "config/esb.yaml": common.config_yaml(url)}, tag)
    project = load_project(root, {})
    return root, name, project_topology(project, [name]), f"{name}.sink"


def _prepare(admin: common.Admin, url: str, count: int, concurrency: int = 16, tag: str = "bx"):
    root, name, topology, sink = relay_project(url, concurrency, tag)
    admin.declare_topology(topology)
    admin.queue(sink)  # reached through the default exchange: its name is the routing key
    preload = common.preload(url, f"{name}.in", "expense.approved", count, common.expense_body, name)
    ready, _ = admin.depth(name)
    if ready != count:
        raise RuntimeError(f"preloaded {ready} messages, expected {count}")
    return root, name, sink, preload


def _verify(admin: common.Admin, source: str, sink: str, count: int) -> dict:
    """After the run: nothing left at the source, exactly `count` XML vouchers at the sink."""
    time.sleep(0.3)  # the last acks travel after the last confirms
    left, _ = admin.depth(source)
    out, _ = admin.depth(sink)
    sample = admin.peek(sink)
    xml_ok = sample is not None and sample[1].startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Voucher>') \
        and b"<total>" in sample[1] and sample[0].content_type == "application/xml"
    ok = left == 0 and out == count and xml_ok
    if not ok:
        print(f"  ! verification failed: source left {left}, sink {out}/{count}, xml ok {xml_ok}", file=sys.stderr)
    return {"source_left": left, "sink": out, "xml_ok": xml_ok, "verified": ok}


def esb_relay(url: str, count: int, workers: int, profile: str | None = None, concurrency: int = 500) -> Run:
    admin = common.Admin(url)
    try:
        root, name, sink, preload = _prepare(admin, url, count, concurrency)
        proc = common.esb_run(root, url, workers, f"esb-relay-w{workers}")
        watch = common.Stopwatch(admin, name, sink, count)
        recorder = profiling.Recorder(proc.pid, profile) if profile else None
        with common.running(proc):
            seconds = watch.run(proc.process, timeout=60 + count / 100,
                                on_start=recorder.start if recorder else None, consumers=workers)
            if recorder:
                recorder.stop()
            details = _verify(admin, name, sink, count)
        skew = None
        if workers > 1 and watch.all_consuming is not None:  # the last worker subscribed this long after
            skew = round(watch.all_consuming[0] - watch.start, 3)
            details["rate_once_all_subscribed"] = round(watch.steady_rate() or 0, 1)
        details.update(workers=workers, concurrency=concurrency, prefetch=concurrency, worker_start_skew_s=skew,
                       exit_code=proc.process.returncode, cpu=watch.cpu)
        if recorder:
            details["profile"] = recorder.report()
        return Run(f"esb {workers} worker{'s' if workers > 1 else ''}", count, seconds, preload, details)
    finally:
        admin.cleanup()
        admin.close()


def baseline_relay(url: str, count: int, prefetch: int, lean: bool = False) -> Run:
    """bench/relay.py, or with `lean` bench/leanrelay.py (the limit)."""
    admin = common.Admin(url)
    kind = "lean" if lean else "baseline"
    try:
        _root, name, sink, preload = _prepare(admin, url, count, tag="bl" if lean else "bb")
        proc = common.Proc(f"{kind}-relay-p{prefetch}", [
            common.PYTHON, "-m", "bench.leanrelay" if lean else "bench.relay", "--url", url, "--queue", name,
            "--exchange", "", "--routing-key", sink, "--prefetch", str(prefetch)])
        watch = common.Stopwatch(admin, name, sink, count)
        with common.running(proc):
            seconds = watch.run(proc.process, timeout=60 + count / 100)
            details = _verify(admin, name, sink, count)
        details.update(prefetch=prefetch, cpu=watch.cpu)
        return Run(f"{kind} prefetch {prefetch}", count, seconds, preload, details)
    finally:
        admin.cleanup()
        admin.close()
