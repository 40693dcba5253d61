"""Single-thread CPU µs per message of esb's path for the I/O route, without the broker:
to_message -> run_steps(to) via RuntimeIO-like call -> to_outgoing, against bench/httpsink (delay 0)
in its own process; compared with a raw urllib3 urlopen of the same body. Issue 14.3 harness.

    .venv/bin/python -m bench.iomicro [--n 3000]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import urllib3

from bench import common, iobench
from esb.adapters.rest import RestAdapter
from esb.adapters.spec import AdapterSpec
from esb.runtime.broker import Delivery
from esb.runtime.envelope import to_message, to_outgoing


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default="raw,adapter,path")
    args = p.parse_args()
    endpoint = iobench.Endpoint(0)
    port = int(endpoint.url.rsplit(":", 1)[1])
    try:
        spec = AdapterSpec(name="ledger", kind="rest", path=Path("adapters/ledger.yaml"),
                           settings={"base_url": endpoint.url, "timeout": "10s",
                                     "operations": {"create_voucher": {"method": "POST", "path": "/vouchers"}}},
                           operations={"create_voucher": {"method": "POST", "path": "/vouchers"}})
        adapter = RestAdapter(spec, Path("."))
        bodies = [common.expense_body(i) for i in range(args.n)]
        deliveries = [Delivery(b, "application/json", {"x-source": "bench"}, f"m-{i}", "q", False, i)
                      for i, b in enumerate(bodies)]
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=4, block=True, timeout=10.0, retries=False)

        def raw(i):
            r = pool.urlopen("POST", "/vouchers", body=bodies[i], headers={
                "Content-Type": "application/json", "Idempotency-Key": f"m-{i}"}, redirect=False)
            return r.data

        def call(i):
            m = to_message(deliveries[i], "json")
            return adapter.call("create_voucher", m, idempotency_key=f"k-{i}")

        def path(i):
            m = to_message(deliveries[i], "json")
            r = adapter.call("create_voucher", m, idempotency_key=f"k-{i}")
            return to_outgoing(m.with_body(r.body, r.content_type))

        for name, fn in (("raw", raw), ("adapter", call), ("path", path)):
            if name not in args.only.split(","):
                continue
            for i in range(200):
                fn(i)
            best = None
            for _ in range(args.rounds):
                t0 = time.process_time()
                for i in range(args.n):
                    fn(i)
                us = (time.process_time() - t0) / args.n * 1e6
                best = us if best is None else min(best, us)
            print(f"{name:8s} {best:6.1f} µs CPU/msg (best of 3, n={args.n})", flush=True)
    finally:
        endpoint.stop()


if __name__ == "__main__":
    main()
