"""Scenario 3: an I/O-bound route. Each message is POSTed to a local endpoint that answers 201
after 20 ms, and the answer is published. esb: a `to` (REST adapter) + `publish` route at
concurrency 64 (so it uses the idempotency store of its temp project: SQLite, or a schema of its
own in the PostgreSQL of BENCH_POSTGRES_URL); baseline:
bench/iorelay.py (pika + ThreadPoolExecutor(64) + one httpx client); peer: bench/fsrelay.py
(FastStream + aiohttp, prefetch 64)."""

from __future__ import annotations

import json
import subprocess
import time

from bench import common, profiling
from bench.relaybench import Run
from esb.loading.project import load_project
from esb.runtime.runtime import project_topology

ROUTE = """\
name: {name}
source: {{exchange: {name}.in, binding_key: "#"}}
concurrency: {concurrency}
steps:
  - label: post-voucher
    to: {{adapter: ledger, operation: create_voucher}}
  - label: out
    publish: {{exchange: {name}.out, routing_key: receipt}}
"""

ADAPTER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 10s
operations:
  create_voucher: {{method: POST, path: /vouchers}}
"""

CONCURRENCY = 64


class Endpoint:
    """bench/httpsink.py in its own process."""

    def __init__(self, delay: float):
        self.proc = common.Proc("httpsink", [common.PYTHON, "-m", "bench.httpsink", "--delay", str(delay)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.process.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.proc.stop()
            raise RuntimeError(f"the HTTP sink did not start: {self.proc.tail()}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stats(self) -> dict:
        self.proc.process.stdin.write(b"stats\n")
        self.proc.process.stdin.flush()
        return json.loads(self.proc.process.stdout.readline())

    def stop(self) -> None:
        self.proc.process.stdin.close()
        self.proc.stop(10)


def _prepare(admin: common.Admin, url: str, endpoint: Endpoint, count: int, tag: str,
             concurrency: int = CONCURRENCY, store_kind: str = "sqlite"):
    name = f"bench-{tag}-{common.uid()}"
    store_url = common.postgres_store_url() if store_kind == "postgres" else None
    root = common.write_project({"routes/io.yaml": ROUTE.format(name=name, concurrency=concurrency),
                                 "adapters/ledger.yaml": ADAPTER.format(url=endpoint.url),
                                 "config/esb.yaml": common.config_yaml(url, store_url)}, tag)
    if store_url is None:
        common.create_store(root)
    admin.declare_topology(project_topology(load_project(root, {}), [name]))
    sink = f"{name}.sink"
    admin.queue(sink, bind_to=f"{name}.out")
    preload = common.preload(url, f"{name}.in", "expense.approved", count, common.expense_body, name)
    return root, name, sink, preload


def _measure(admin, endpoint: Endpoint, proc: common.Proc, name: str, sink: str, count: int,
             profile: str | None = None) -> tuple[float, dict]:
    before = endpoint.stats()
    watch = common.Stopwatch(admin, name, sink, count)
    recorder = profiling.Recorder(proc.pid, profile) if profile else None
    with common.running(proc):
        seconds = watch.run(proc.process, timeout=60 + count / 50, on_start=recorder.start if recorder else None)
        if recorder:
            recorder.stop()
        time.sleep(0.3)
        left, _ = admin.depth(name)
        out, _ = admin.depth(sink)
        sample = admin.peek(sink)
    after = endpoint.stats()
    requests = after["requests"] - before["requests"]
    body_ok = sample is not None and b'"voucher_id"' in sample[1]
    details = {"source_left": left, "sink": out, "http_requests": requests,
               "tcp_connections": after["connections"] - before["connections"],
               "verified": left == 0 and out == count and body_ok, "cpu": watch.cpu}
    if recorder:
        details["profile"] = recorder.report()
    return seconds, details


def esb_io(url: str, endpoint: Endpoint, count: int, store: bool = True, profile: str | None = None,
           workers: int = 1, store_kind: str = "sqlite") -> Run:
    """store=True: the real `esb run --workers N`, each worker at concurrency 64/N (so 64 calls are in
    flight, as in the baseline), on the store `store_kind` (sqlite, postgres); False: one worker
    (bench/esbworker.py) with store=None."""
    admin = common.Admin(url)
    concurrency = CONCURRENCY // workers
    try:
        root, name, sink, preload = _prepare(admin, url, endpoint, count, "bio", concurrency, store_kind)
        if store:
            proc = common.esb_run(root, url, workers, f"esb-io-w{workers}")
        else:
            proc = common.Proc("esb-io-nostore", [common.PYTHON, "-m", "bench.esbworker", "--root", str(root),
                                                  "--broker", url, "--no-store"])
        seconds, details = _measure(admin, endpoint, proc, name, sink, count, profile)
        details.update(concurrency=concurrency, prefetch=concurrency, processes=workers,
                       store=store_kind if store else "none",
                       log_lines=proc.log_lines(), log=str(proc.log_path.relative_to(common.ROOT)))
        what = f"esb {workers} worker{'s' if workers > 1 else ''}" + (f" ({store_kind})" if store else " (store=None)")
        return Run(what, count, seconds, preload, details)
    finally:
        admin.cleanup()
        admin.close()


def baseline_io(url: str, endpoint: Endpoint, count: int, prefetch: int = CONCURRENCY,
                keepalive: int = CONCURRENCY, client: str = "httpx", cpu: int | None = None) -> Run:
    """client: the baseline's HTTP client, urllib3 (esb's own, the baseline of the target) or httpx;
    cpu: pin it to that core (as esb runs under cpu.affinity auto)."""
    admin = common.Admin(url)
    try:
        _root, name, sink, preload = _prepare(admin, url, endpoint, count, "bib")
        proc = common.Proc(f"baseline-io-{client}", [
            common.PYTHON, "-m", "bench.iorelay", "--url", url, "--queue", name, "--exchange", f"{name}.out",
            "--endpoint", endpoint.url + "/vouchers", "--threads", str(CONCURRENCY), "--prefetch", str(prefetch),
            "--keepalive", str(keepalive), "--client", client, *(["--cpu", str(cpu)] if cpu is not None else [])])
        seconds, details = _measure(admin, endpoint, proc, name, sink, count)
        details.update(threads=CONCURRENCY, prefetch=prefetch, keepalive=keepalive, client=client, pinned_core=cpu)
        return Run(f"baseline {client}" + (f" pinned to core {cpu}" if cpu is not None else ""), count, seconds,
                   preload, details)
    finally:
        admin.cleanup()
        admin.close()


def peer_io(url: str, endpoint: Endpoint, count: int) -> Run:
    """The same route in FastStream + aiohttp (bench/fsrelay.py), as a peer framework would run it."""
    admin = common.Admin(url)
    try:
        _root, name, sink, preload = _prepare(admin, url, endpoint, count, "bif")
        proc = common.Proc("faststream-io", [
            common.PYTHON, "-m", "bench.fsrelay", "--url", url, "--queue", name, "--exchange", f"{name}.out",
            "--endpoint", endpoint.url + "/vouchers", "--prefetch", str(CONCURRENCY)])
        seconds, details = _measure(admin, endpoint, proc, name, sink, count)
        details.update(prefetch=CONCURRENCY, log_lines=proc.log_lines(),
                       log=str(proc.log_path.relative_to(common.ROOT)))
        return Run("FastStream + aiohttp", count, seconds, preload, details)
    finally:
        admin.cleanup()
        admin.close()
