"""The I/O route in-process, no broker: a fake broker feeds N deliveries at prefetch 64 to esb's
Runtime (store=None, or with `store` SQLite in a new file each run; 64 lanes, REST adapter) against
bench/httpsink (20 ms) in its own process; confirms complete at once. Reference:
ThreadPoolExecutor(64) + urllib3, fed the same way. Prints CPU µs/msg (process_time) and
voluntary context switches per message. Issue 14.3 harness.

    .venv/bin/python -m bench.iothreads [--n 3000] [--rounds 2] [--which esb,store,raw]
"""
from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import urllib3

from bench import common, iobench
from esb.cli.main import configure_logging
from esb.loading.project import load_project
from esb.runtime.broker import Confirmation, Delivery
from esb.runtime.runtime import Runtime
from esb.store.sqlite import SqliteStore


class FakeBroker:
    def __init__(self, gate: threading.Semaphore, done: threading.Event, count: int):
        self.gate, self.done, self.count, self.acked, self.published = gate, done, count, 0, 0
        self.on_delivery = None
        self.lock = threading.Lock()

    def start(self): pass
    def declare(self, topology): pass
    def consume(self, queue, prefetch, on_delivery): self.on_delivery = on_delivery
    def cancel(self, queue): pass
    def stop(self): pass
    def queue_depth(self, queue): return (0, 0)

    def publish(self, exchange, routing_key, message):
        f = Confirmation()
        self.published += 1
        f.set_result(None)
        return f

    def ack(self, delivery):
        with self.lock:
            self.acked += 1
            if self.acked == self.count:
                self.done.set()
        self.gate.release()

    def reject(self, delivery, requeue):
        raise RuntimeError("rejected")


def run_esb(root, bodies, c=64, store=False):
    n = len(bodies)
    gate, done = threading.Semaphore(c), threading.Event()
    broker = FakeBroker(gate, done, n)
    path = root / "var" / f"store-{time.monotonic_ns()}.sqlite3"
    runtime = Runtime(load_project(root, {}), broker, store=SqliteStore(path) if store else None)
    runtime.start()
    deliver = broker.on_delivery
    t0, r0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.perf_counter()
    for i, body in enumerate(bodies):
        gate.acquire()
        deliver(Delivery(body, "application/json", {"x": "y"}, f"m-{i}", "q", False, i))
    done.wait(120)
    cpu, r1 = time.process_time() - t0, resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - w0
    runtime.stop()
    return cpu, wall, r1.ru_nvcsw - r0.ru_nvcsw + r1.ru_nivcsw - r0.ru_nivcsw


def run_raw(endpoint, bodies, c=64):
    n = len(bodies)
    gate, done = threading.Semaphore(c), threading.Event()
    host, port = endpoint.split("//")[1].split(":")
    pool = urllib3.HTTPConnectionPool(host, int(port), maxsize=c, block=True, timeout=10.0, retries=False)
    ex = ThreadPoolExecutor(c)
    count = [0]
    lock = threading.Lock()

    def work(i, body):
        r = pool.urlopen("POST", "/vouchers", body=body, headers={"Content-Type": "application/json",
                                                                  "Idempotency-Key": f"m-{i}"}, redirect=False)
        _ = r.data
        with lock:
            count[0] += 1
            if count[0] == n:
                done.set()
        gate.release()
    t0, r0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.perf_counter()
    for i, body in enumerate(bodies):
        gate.acquire()
        ex.submit(work, i, body)
    done.wait(120)
    cpu, r1 = time.process_time() - t0, resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - w0
    ex.shutdown()
    return cpu, wall, r1.ru_nvcsw - r0.ru_nvcsw + r1.ru_nivcsw - r0.ru_nivcsw


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--which", default="esb,raw")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--pin", action="store_true", help="run this process (not the HTTP sink) on one core")
    args = p.parse_args()
    configure_logging("warning")
    endpoint = iobench.Endpoint(0.02)
    if args.pin:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    try:
        root = common.write_project({"routes/io.yaml": iobench.ROUTE.format(name="io", concurrency=args.concurrency),
                                     "adapters/ledger.yaml": iobench.ADAPTER.format(url=endpoint.url),
                                     "config/esb.yaml": common.config_yaml("amqp://guest:guest@127.0.0.1/")}, "iot")
        bodies = [common.expense_body(i) for i in range(args.n)]
        for _ in range(args.rounds):
            for which in args.which.split(","):
                cpu, wall, ctx = run_raw(endpoint.url, bodies, args.concurrency) if which == "raw" \
                    else run_esb(root, bodies, args.concurrency, store=which == "store")
                print(f"{which:4s} c={args.concurrency} n={args.n} {args.n / wall:6.0f} msg/s "
                      f"{cpu / args.n * 1e6:6.0f} µs CPU/msg "
                      f"{ctx / args.n:5.1f} ctxsw/msg  load={os.getloadavg()[0]:.1f}", flush=True)
    finally:
        endpoint.stop()
        common.remove_projects()


if __name__ == "__main__":
    main()
