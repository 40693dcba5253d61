"""`make bench`: esb's throughput and latency against hand-written raw-client baselines.

    python -m bench             # the full run (20,000 relay messages, 5,000 I/O messages, 10 s latency)
    python -m bench --quick     # 2,000 / 500 messages, 3 s of latency: to iterate
    python -m bench --only relay,io --repeat 3
    python -m bench --profile   # also: py-spy on the esb worker (extra 1-worker relay and I/O runs)
    python -m bench --tune      # sweep the baseline relay's prefetch
    python -m bench --strict    # exit 1 when a target is missed (otherwise 0 unless the bench broke)
    python -m bench --soak      # 1,000,000 messages through 1 esb worker: its RSS must not grow (exit 1 if it does)

Every scenario runs on the same RabbitMQ, in queues and exchanges named bench-*-<random> that it
deletes afterwards. The processes under test (esb workers, baselines, the HTTP endpoint) run
apart from this one, which only preloads, polls queue depths, and paces the latency test.
Results: a table on stdout, the same and every detail in var/bench-results.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from bench import common, cpumeter, iobench, latency, profiling, relaybench, soak, webhookbench

# = the esb route's `concurrency` (messages in flight), so both pipeline alike;
BASELINE_PREFETCH = 500  # `--tune` here: 100 → 3.7k, 300 → 4.2k, 500 → 4.3k, 1000 → 4.7k msg/s (brief: 100-500)
NOISY = 0.25                # cores used by other processes during a run above which a figure is flagged
LATENCY_P99_MS = 3.0        # the latency target: p99 at 500 msg/s through 1 esb worker
LATE_WAKEUP_MS = 1.0        # p99 of a thread's wake-up from a 1 ms sleep above which latency is flagged
STOLEN_PCT = 0.25           # % of the machine's time the hypervisor gave other guests, above which a run is flagged
LATENCY_ATTEMPTS = 3        # latency runs at most, until one is quiet


def main() -> int:
    args = _arguments()
    with common.exclusive():
        try:
            return _main(args)
        finally:
            common.remove_projects()


class ScenarioFailed(Exception):
    """A measurement failed twice; the scenario is reported as not completed and the bench goes on."""


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 / 500 messages, a 3 s latency run")
    parser.add_argument("--only", default="relay,latency,io,webhook",
                        help="scenarios: relay, latency, io, webhook")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs of each throughput measurement, interleaved; the best counts (default 2, 1 quick)")
    parser.add_argument("--url", default=os.environ.get("ESB_BENCH_URL", common.DEFAULT_URL))
    parser.add_argument("--prefetch", type=int, default=BASELINE_PREFETCH, help="the baseline relay's prefetch")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the esb worker in an extra relay run and an extra I/O run")
    parser.add_argument("--tune", action="store_true", help="sweep the baseline relay's prefetch, then exit")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed (for CI)")
    parser.add_argument("--soak", action="store_true",
                        help="only the RSS soak: --soak-count messages through 1 esb worker; exit 1 if RSS grew")
    parser.add_argument("--cpu-affinity", default="auto", help="esb's cpu.affinity in every esb run (auto: each "
                        "worker on a core of its own, as deployed on a machine esb owns; off)")
    parser.add_argument("--soak-count", type=int, default=1_000_000)
    parser.add_argument("--soak-timeout", type=float, default=3600.0, help="seconds (default 3600)")
    args = parser.parse_args()
    os.environ["ESB_CPU_AFFINITY"] = args.cpu_affinity  # every esb process the bench starts inherits it
    args.relay_n, args.io_n = (2_000, 500) if args.quick else (20_000, 5_000)
    args.latency_s = 3.0 if args.quick else 10.0
    args.repeat = args.repeat or (1 if args.quick else 2)
    return args


def _main(args: argparse.Namespace) -> int:
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    started = time.perf_counter()
    results: dict = {"when": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                     "host": _host(), "quick": args.quick, "repeat": args.repeat, "rows": [], "runs": {}}
    _preflight(args.url)
    if args.tune:
        return _tune(args.url, args.relay_n)
    if args.soak:
        return _soak(args)

    rows = results["rows"]
    for name, scenario in (("relay", _relay), ("latency", _latency), ("io", _io), ("webhook", _webhook)):
        if name not in only:
            continue
        try:
            scenario(args, results, rows)
        except ScenarioFailed as exc:
            print(f"  ! {name} did not complete: {exc}")
            results.setdefault("errors", {})[name] = str(exc)
            rows.append({"what": f"{name}: did not complete", "esb": "error", "baseline": "-", "ratio": None,
                         "target": "-", "pass": False, "noisy": False})

    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    _table(rows)
    common.VAR.mkdir(exist_ok=True)
    out = common.VAR / "bench-results.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"\nwritten to {out.relative_to(common.ROOT)} ({results['elapsed_s']:.0f} s)")
    missed = [r["what"] for r in rows if r["pass"] is False]
    return 1 if args.strict and missed else 0


def _relay(args, results: dict, rows: list) -> None:
    _section(f"1. JSON→XML relay, {args.relay_n:,} preloaded messages each (best of {args.repeat})")
    runs = {"baseline": [], "lean": [], "esb1": [], "esb2": []}
    for _ in range(args.repeat):
        runs["baseline"].append(_attempt(relaybench.baseline_relay, args.url, args.relay_n, args.prefetch))
        runs["lean"].append(_attempt(relaybench.baseline_relay, args.url, args.relay_n, args.prefetch, lean=True))
        runs["esb1"].append(_attempt(relaybench.esb_relay, args.url, args.relay_n, 1))
        runs["esb2"].append(_attempt(relaybench.esb_relay, args.url, args.relay_n, 2))
    results["runs"]["relay"] = {k: [_as_dict(r) for r in v] for k, v in runs.items()}
    base, lean = _best(runs["baseline"]), _best(runs["lean"])
    for key, label, target in (("esb1", "JSON→XML relay, esb 1 worker", 0.8),
                               ("esb2", "JSON→XML relay, esb 2 workers", 1.0)):
        # the target is against the lean limit (orjson + lxml, floats instead of Decimal: bench/leanrelay.py)
        rows.append(_throughput_row(label, _best(runs[key]), lean, target))
        # esb's own transform in a hand-written relay: since esb's converter writes XML text, faster than lxml
        rows.append(_throughput_row("  same vs a relay on esb's own transform (info)", _best(runs[key]), base, None))
    if args.profile and profiling.available():
        _section("profile: py-spy on the 1-worker esb relay (not a measured run)")
        path = str(common.VAR / "bench-profile-relay.txt")
        run = _attempt(relaybench.esb_relay, args.url, args.relay_n, 1, profile=path)
        results["profile_relay"] = run.details["profile"] | {"raw": path, "rate_under_profiler": round(run.rate)}
        _print_profile(results["profile_relay"])
    elif args.profile:
        print("  py-spy is not installed: .venv/bin/pip install py-spy")


def _latency(args, results: dict, rows: list) -> None:
    rate = 500.0
    _section(f"2. latency at {rate:g} msg/s for {args.latency_s:g} s (+1 s warm-up), send → sink")
    wakeup = common.late_wakeup_ms()
    print(f"  this host wakes a sleeping thread late by {wakeup:.2f} ms at p99 (quiet: ≤ {LATE_WAKEUP_MS:g} ms)")
    lat, esb_runs = _quiet_latency("esb 1 worker", latency.esb_latency, args.url, rate, args.latency_s)
    ref, ref_runs = _quiet_latency("baseline (reference)", latency.baseline_latency, args.url, rate, args.latency_s,
                                   args.prefetch)
    # A host on which the hand-written relay itself misses the target (a slow or busy one: 500 msg/s
    # kept a 2 GHz host's two cores 75% busy) says nothing about esb's own latency.
    slow_host = ref["p99_ms"] > LATENCY_P99_MS
    noisy = _noisy(lat["cpu"]) or wakeup > LATE_WAKEUP_MS or slow_host
    verdict = "PASS" if lat["p99_ms"] <= LATENCY_P99_MS else "FAIL"
    why = (f"the hand-written relay's own p99 is {ref['p99_ms']} ms on this host" if slow_host
           else f"no quiet run in {len(esb_runs)}")
    print(f"  esb p99 {lat['p99_ms']} ms against the target ≤ {LATENCY_P99_MS:g} ms: {verdict}"
          + (f" (~ {why}: rerun on a quieter or faster machine to confirm)" if noisy else ""))
    results["runs"]["latency"] = {"esb": lat, "baseline": ref, "late_wakeup_p99_ms": round(wakeup, 3),
                                  "esb_attempts": esb_runs, "baseline_attempts": ref_runs}
    rows.append({"what": f"latency @ {rate:g} msg/s, esb 1 worker",
                 "esb": f"p50 {lat['p50_ms']:.1f} / p99 {lat['p99_ms']:.1f} ms",
                 "baseline": f"p99 {ref['p99_ms']:.1f} ms", "ratio": None, "target": f"p99 ≤ {LATENCY_P99_MS:g} ms",
                 "pass": lat["p99_ms"] <= LATENCY_P99_MS, "noisy": noisy,
                 "p50_ms": lat["p50_ms"], "p99_ms": lat["p99_ms"]})


def _quiet_latency(what: str, measure, *args) -> tuple[dict, list[dict]]:
    """Measure until a run is quiet, at most LATENCY_ATTEMPTS times: a p99 is made of the few slowest
    wake-ups, and a neighbour on the host that steals 1-9% of this machine's time multiplies it
    (seen here: the hand-written relay's p99 1.4-2.6 ms quiet, 3.5-20 ms with 1-9% stolen). Every attempt
    is shown and kept; the quiet one counts, else the one with the least stolen time."""
    runs = []
    for attempt in range(LATENCY_ATTEMPTS):
        lat = _retrying(measure, *args)
        _show_latency(what if attempt == 0 else f"{what}, again", lat)
        runs.append(lat)
        if not _noisy(lat["cpu"]):
            break
    return min(runs, key=lambda r: (_noisy(r["cpu"]), r["cpu"].get("steal_pct", 0))), runs


def _webhook(args, results: dict, rows: list) -> None:
    count = 1_000 if args.quick else 10_000
    _section(f"4. webhooks in: {count:,} signed POSTs, {webhookbench.CLIENTS} clients, 202 after the broker's confirm")
    esb = max(_retrying(webhookbench.esb_rate, args.url, count) for _ in range(args.repeat))
    base = max(_retrying(webhookbench.baseline_rate, args.url, count) for _ in range(args.repeat))
    print(f"  esb {esb:,.0f} req/s, baseline (cheroot + pika confirms) {base:,.0f} req/s")
    results["runs"]["webhook"] = {"esb_rps": esb, "baseline_rps": base}
    rows.append({"what": "confirmed webhooks/s, esb vs cheroot+pika", "esb": f"{esb:,.0f}/s",
                 "baseline": f"{base:,.0f}/s", "ratio": esb / base, "target": "reported", "pass": None,
                 "noisy": False})


def _io(args, results: dict, rows: list) -> None:
    _section(f"3. I/O-bound route: POST (201 after 20 ms) + publish, concurrency 64, {args.io_n:,} messages "
             f"(best of {args.repeat})")
    endpoint = iobench.Endpoint(0.02)
    try:
        runs = {"baseline": [], "baseline_urllib3": [], "baseline_urllib3_pinned": [], "faststream": [], "esb": [],
                "esb_postgres": [], "esb_nostore": [], "esb2": []}
        for _ in range(args.repeat):
            runs["baseline"].append(_attempt(iobench.baseline_io, args.url, endpoint, args.io_n))
            runs["baseline_urllib3"].append(_attempt(iobench.baseline_io, args.url, endpoint, args.io_n,
                                                     client="urllib3"))
            runs["baseline_urllib3_pinned"].append(_attempt(iobench.baseline_io, args.url, endpoint, args.io_n,
                                                            client="urllib3", cpu=min(os.sched_getaffinity(0))))
            runs["faststream"].append(_attempt(iobench.peer_io, args.url, endpoint, args.io_n))
            _store_pair(args, endpoint, runs)
            runs["esb_postgres"].append(_attempt(iobench.esb_io, args.url, endpoint, args.io_n,
                                                 store_kind="postgres"))
            runs["esb2"].append(_attempt(iobench.esb_io, args.url, endpoint, args.io_n, workers=2))
        while len(runs["esb"]) < STORE_PAIRS and not args.quick:
            _store_pair(args, endpoint, runs)
        if args.profile and profiling.available():
            _section("profile: py-spy on the esb I/O route (not a measured run)")
            path = str(common.VAR / "bench-profile-io.txt")
            run = _attempt(iobench.esb_io, args.url, endpoint, args.io_n, profile=path)
            results["profile_io"] = run.details["profile"] | {"raw": path, "rate_under_profiler": round(run.rate)}
            _print_profile(results["profile_io"])
    finally:
        endpoint.stop()
    results["runs"]["io"] = {k: [_as_dict(r) for r in v] for k, v in runs.items()}
    # the raw thread pool on urllib3, the HTTP client of esb's REST adapter: the ratio is esb's own cost
    base, esb, bare = _best(runs["baseline_urllib3"]), _best(runs["esb"]), _best(runs["esb_nostore"])
    rows.append(_throughput_row("I/O route (to + publish), esb 1 worker", esb, base, 1.0))
    # a peer framework on the same route: FastStream (aio-pika) + aiohttp (bench/fsrelay.py)
    rows.append(_throughput_row("  esb vs FastStream + aiohttp", esb, _best(runs["faststream"]), 1.3))
    rows.append(_throughput_row("  esb vs that baseline pinned to one core too (info)", esb,
                                _best(runs["baseline_urllib3_pinned"]), None))
    rows.append(_throughput_row("  esb vs a baseline on httpx (info)", esb, _best(runs["baseline"]), None))
    rows.append(_throughput_row("  same, PostgreSQL store (info)", _best(runs["esb_postgres"]), base, None))
    rows.append(_throughput_row("  same, idempotency store off (info)", bare, base, None))
    rows.append(_throughput_row("  esb 2 workers x 32 (info)", _best(runs["esb2"]), base, None))
    # Of the real route's time per message: the median over pairs of runs made one right after the
    # other, since this host's speed drifts by more than the store costs between runs a minute apart.
    shares = [1 - with_store.rate / without.rate for with_store, without
              in zip(runs["esb"], runs["esb_nostore"], strict=True)]
    share = statistics.median(shares)
    results["store_share_of_time"] = round(share, 3)
    results["store_share_pairs"] = [round(s, 3) for s in shares]
    print(f"  the SQLite idempotency store costs {share:.0%} of the esb route's time: the median of "
          f"{len(shares)} pairs of runs made back to back ({', '.join(f'{s:.0%}' for s in shares)}); "
          f"best of each: {esb.rate:.0f} msg/s with it, {bare.rate:.0f} without ({1 - esb.rate / bare.rate:.0%}); "
          f"target ≤ 10%: {'PASS' if share <= 0.10 else 'FAIL'}")
    # The same cost in CPU a message: medians over the same runs, esb's process and RabbitMQ apart.
    with_cpu, without_cpu = ([_cpu_us(run) for run in runs[key]] for key in ("esb", "esb_nostore"))
    process, broker = (statistics.median(c[i] for c in with_cpu) - statistics.median(c[i] for c in without_cpu)
                       for i in (0, 1))
    whole = statistics.median(sum(c) for c in with_cpu)
    results["store_cpu_us"] = {"process": round(process), "rabbitmq": round(broker), "route": round(whole)}
    if whole > 0:  # 0: no CPU was read (a run that failed to start its meter)
        print(f"  by CPU: {process:+.0f} µs a message in esb's process and {broker:+.0f} µs in RabbitMQ, "
              f"{(process + broker) / whole:.0%} of the {whole:,.0f} µs the two spend a message with the store "
              f"(medians of the same runs; info)")
    pg = _best(runs["esb_postgres"])
    results["postgres_store_share_of_time"] = round(1 - pg.rate / bare.rate, 3)
    print(f"  the PostgreSQL store costs {1 - pg.rate / bare.rate:.0%} of it ({pg.rate:.0f} msg/s with it)")


# -- pieces -----------------------------------------------------------------------------------

STORE_PAIRS = 4  # pairs of esb runs with and without the store behind the store's share (≥ --repeat)


def _store_pair(args, endpoint: iobench.Endpoint, runs: dict) -> None:
    """esb with its SQLite store and without, one right after the other, in turns first."""
    order = [("esb", True), ("esb_nostore", False)]
    for key, store in order if len(runs["esb"]) % 2 == 0 else order[::-1]:
        runs[key].append(_attempt(iobench.esb_io, args.url, endpoint, args.io_n, store=store))


def _preflight(url: str) -> None:
    import pika
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except Exception as exc:  # noqa: BLE001
        sys.exit(f"cannot reach RabbitMQ at {url.rpartition('@')[2]}: {exc} (run `make services`)")
    meter = cpumeter.CpuMeter()
    time.sleep(1.0)
    idle = meter.read(1.0)
    print(f"host: {cpumeter.CORES} cores; before starting, other processes use {idle['others']:.2f} cores, "
          f"RabbitMQ {idle['rabbitmq']:.2f}; the hypervisor takes {idle['steal_pct']:.1f}% of this machine's time")
    if _noisy(idle):
        print("  ! the machine is busy: figures marked '~' ran while it was not quiet")


def _soak(args) -> int:
    _section(f"RSS soak: {args.soak_count:,} messages through the relay route, esb 1 worker "
             f"(at most {args.soak_timeout:.0f} s)")
    try:
        result = soak.soak(args.url, args.soak_count, args.soak_timeout)
    except RuntimeError as exc:
        print(f"  ! the soak did not complete: {exc} (logs: {common.LOGS.relative_to(common.ROOT)}/)")
        return 1
    print(soak.report(result))
    common.VAR.mkdir(exist_ok=True)
    out = common.VAR / "bench-soak.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(common.ROOT)}")
    return 0 if result["pass"] else 1


def _tune(url: str, count: int) -> int:
    _section(f"baseline relay prefetch sweep, {count:,} messages each")
    for prefetch in (16, 50, 100, 200, 300, 500, 1000, 2000):
        _show(relaybench.baseline_relay(url, count, prefetch))
    return 0


def _attempt(measure, *args, **kwargs) -> relaybench.Run:
    return _show(_retrying(measure, *args, **kwargs))


def _retrying(measure, *args, **kwargs):
    """One retry: on a shared broker a test may close every connection (rabbitmqctl close_all_connections)."""
    for attempt in (1, 2):
        try:
            return measure(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported; tried once more, then the scenario gives up
            why = f"{type(exc).__name__}: {exc} (logs: {common.LOGS.relative_to(common.ROOT)}/)"
            if attempt == 2:
                raise ScenarioFailed(why) from exc
            print(f"  ! {why} — retrying once")


def _section(title: str) -> None:
    print(f"\n{title}", flush=True)


def _show(run: relaybench.Run) -> relaybench.Run:
    d = run.details
    cpu = d.get("cpu") or {}
    process_us, broker_us = _cpu_us(run)
    extra = ""
    if d.get("workers", 1) > 1:
        if d.get("worker_start_skew_s") is None:
            extra += ", the last worker did not subscribe before the end"
        else:
            extra += (f", last worker subscribed {d['worker_start_skew_s']:.2f} s after the first consumption, "
                      f"{d['rate_once_all_subscribed']:.0f} msg/s from then")
    if "tcp_connections" in d:
        extra += f", {d['http_requests']} requests on {d['tcp_connections']} TCP connections"
    if d.get("log_lines"):
        extra += f", {d['log_lines']} warning/error lines in {d['log']}"
    if not d.get("verified", True):
        extra += ", VERIFICATION FAILED"
    print(f"  {run.what:<28} {run.rate:7.0f} msg/s  ({run.count:,} in {run.seconds:.2f} s; "
          f"µs CPU/msg: {process_us:.0f} process under test, {broker_us:.0f} RabbitMQ{extra}){_noise(cpu)}",
          flush=True)
    return run


def _show_latency(what: str, lat: dict) -> None:
    print(f"  {what:<22} {lat['counted']} messages at {lat['achieved_rate']} msg/s: p50 {lat['p50_ms']} ms, "
          f"p90 {lat['p90_ms']} ms, p99 {lat['p99_ms']} ms, p99.9 {lat['p999_ms']} ms, max {lat['max_ms']} ms"
          f"{_noise(lat['cpu'])}", flush=True)


def _noise_reasons(cpu: dict | None) -> list[str]:
    """Why a run was not quiet (none: it was)."""
    said = []
    if cpu and cpu.get("others", 0) > NOISY:
        said.append(f"other processes used {cpu['others']:.2f} cores")
    if cpu and cpu.get("steal_pct", 0) > STOLEN_PCT:
        said.append(f"the hypervisor took {cpu['steal_pct']:.1f}% of this machine's time")
    return said


def _noisy(cpu: dict | None) -> bool:
    return bool(_noise_reasons(cpu))


def _noise(cpu: dict) -> str:
    said = _noise_reasons(cpu)
    return f"  ~ {', '.join(said)}" if said else ""


def _cpu_us(run: relaybench.Run) -> tuple[float, float]:
    """CPU µs per message: the process tree under test, and RabbitMQ (all of it, during the run)."""
    cpu = run.details.get("cpu") or {}
    return cpu.get("subject_cpu_s", 0) / run.count * 1e6, cpu.get("rabbitmq_cpu_s", 0) / run.count * 1e6


def _best(runs: list[relaybench.Run]) -> relaybench.Run:
    """The fastest verified run: on a shared box other load only ever slows a run down."""
    verified = [r for r in runs if r.details.get("verified")]
    return max(verified or runs, key=lambda r: r.rate)


def _throughput_row(what: str, esb: relaybench.Run, base: relaybench.Run, target: float | None) -> dict:
    ratio = esb.rate / base.rate
    noisy = any(_noisy(r.details.get("cpu")) for r in (esb, base))
    ok = esb.details.get("verified") and base.details.get("verified")
    (esb_p, esb_b), (base_p, base_b) = _cpu_us(esb), _cpu_us(base)
    return {"what": what, "esb": round(esb.rate), "baseline": round(base.rate), "ratio": round(ratio, 2),
            "cpu_us": f"{esb_p:.0f}+{esb_b:.0f} / {base_p:.0f}+{base_b:.0f}",
            "target": f"≥ {target:.1f}×" if target is not None else "-",
            "pass": (bool(ok) and ratio >= target) if target is not None else None, "noisy": noisy}


def _table(rows: list[dict]) -> None:
    print()
    header = (f"{'what':<44} {'esb msg/s':>24} {'baseline':>12} {'ratio':>6}  {'µs CPU/msg esb / base':>22}  "
              f"{'target':<12} result")
    print(header)
    print("-" * len(header))
    for r in rows:
        esb = f"{r['esb']:,}" if isinstance(r["esb"], int) else r["esb"]
        base = f"{r['baseline']:,}" if isinstance(r["baseline"], int) else r["baseline"]
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "-"
        result = "info" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        flag = " ~" if r.get("noisy") else ""
        print(f"{r['what']:<44} {esb:>24} {base:>12} {ratio:>6}  {r.get('cpu_us', '-'):>22}  "
              f"{r['target']:<12} {result}{flag}")
    if any(r.get("noisy") for r in rows):
        print(f"~ not quiet: other processes used more than {NOISY} cores, or the hypervisor took more than "
              f"{STOLEN_PCT}% of the machine's time, during that measurement (for latency also: the hand-written "
              f"relay itself missed the target): rerun on a quiet machine")
    print("µs CPU/msg: process under test + RabbitMQ, for esb / for the baseline")


def _print_profile(profile: dict) -> None:
    print(f"  {profile['samples']} samples; time by thread: "
          + ", ".join(f"{name} {share}%" for name, share in profile["threads"][:4]))
    print("  top functions by own time:")
    for name, share in profile["own"][:15]:
        print(f"    {share:5.1f}%  {name}")


def _as_dict(run: relaybench.Run) -> dict:
    return {"what": run.what, "count": run.count, "seconds": round(run.seconds, 3), "msg_per_s": round(run.rate, 1),
            "preload_seconds": round(run.preload_seconds, 2), **run.details}


def _host() -> dict:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT, capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    return {"cores": cpumeter.CORES, "python": platform.python_version(), "rabbitmq": common.rabbit_version(),
            "git": rev}


if __name__ == "__main__":
    sys.exit(main())
