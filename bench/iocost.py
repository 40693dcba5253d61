"""CPU µs per message of the I/O route (bench/iobench.py) at small N: esb --no-store, and the
urllib3 baseline. Issue 14.3 working harness.

    .venv/bin/python -m bench.iocost [--n 1500] [--rounds 2] [--which esb,urllib3] [--profile FILE]
"""
from __future__ import annotations

import argparse

from bench import common, iobench


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--which", default="esb")
    p.add_argument("--profile")
    p.add_argument("--python", help="the interpreter of the process under test (e.g. a taskset wrapper)")
    args = p.parse_args()
    endpoint = iobench.Endpoint(0.02)
    if args.python:  # after the endpoint: only the process under test runs under it
        common.PYTHON = args.python
    try:
        for _ in range(args.rounds):
            for which in args.which.split(","):
                if which == "esb":
                    run = iobench.esb_io(args.url, endpoint, args.n, store=False, profile=args.profile)
                elif which == "store":
                    run = iobench.esb_io(args.url, endpoint, args.n, store=True)
                else:
                    if args.profile:
                        orig = iobench._measure
                        iobench._measure = lambda *a, orig=orig, which=which, **k: orig(
                            *a, **{**k, "profile": args.profile + "." + which})
                    run = iobench.baseline_io(args.url, endpoint, args.n, client=which)
                    if args.profile:
                        iobench._measure = orig
                cpu = run.details["cpu"]
                us = cpu["subject_cpu_s"] / args.n * 1e6
                print(f"{which:8s} n={args.n} {run.rate:7.0f} msg/s  {us:6.0f} µs/msg "
                      f"(user {cpu['subject_user_s']:.2f}s sys {cpu['subject_sys_s']:.2f}s, "
                      f"ctx {cpu['subject_ctx_switches']}) others={cpu['others']} ok={run.details['verified']}",
                      flush=True)
                if args.profile and which == "esb":
                    print(run.details.get("profile"))
    finally:
        endpoint.stop()
        common.remove_projects()


if __name__ == "__main__":
    main()
