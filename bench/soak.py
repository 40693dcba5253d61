"""The RSS soak (`python -m bench --soak`): N messages through the relay route, esb 1 worker, and its memory.

The bench keeps the route's queue topped up (chunks of CHUNK with pipelined confirms whenever fewer
than CHUNK are ready, so the broker never holds the whole run) and purges the sink as it fills,
counting what it purged. It samples the RSS of the esb process tree (VmRSS in /proc/<pid>/status
for the process and its children) at start, once WARM messages came out, at the end, and keeps
the peak. It passes when the end is within TOLERANCE of the WARM mark:
a worker that leaks grows with the messages it handled.
"""

from __future__ import annotations

import time

from bench import common, cpumeter, relaybench

WARM = 50_000     # the reference mark: caches, pools and allocator arenas have settled by then
TOLERANCE = 0.10  # end RSS within 10% of the mark
CHUNK = 20_000
STALL_S = 60.0    # no output for this long: the run failed


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (the tree as cpumeter finds it in /proc)."""
    return sum(_vmrss(p) for p in cpumeter.process_tree(pid))


def _vmrss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def soak(url: str, count: int, timeout: float) -> dict:
    admin = common.Admin(url)
    bodies = [common.expense_body(i) for i in range(100)]  # the bench must not be the bottleneck
    try:
        root, name, topology, sink = relaybench.relay_project(url, 500, "bs")
        admin.declare_topology(topology)
        admin.queue(sink)
        sent = _top_up(url, admin, name, 0, count, bodies)
        proc = common.esb_run(root, url, 1, "esb-soak")
        with common.running(proc):
            common.Stopwatch(admin, name, sink, 0).wait_consumers(1)
            started = time.perf_counter()
            mib = {"start": tree_rss(proc.pid) / 2**20}
            mib["peak"] = mib["start"]
            done, last_progress, deadline = 0, started, started + timeout
            while done < count:
                now = time.perf_counter()
                if proc.process.poll() is not None:
                    raise RuntimeError(f"the esb worker exited ({proc.process.returncode}) after {done:,} messages")
                if now > deadline or now - last_progress > STALL_S:
                    raise RuntimeError(f"timed out: {done:,} of {count:,} messages after {now - started:.0f} s")
                sent = _top_up(url, admin, name, sent, count, bodies)
                purged = admin.channel.queue_purge(sink).method.message_count
                if purged:
                    done, last_progress = done + purged, now
                rss = tree_rss(proc.pid) / 2**20
                mib["peak"] = max(mib["peak"], rss)
                if done >= WARM and "at_50k" not in mib:
                    mib["at_50k"] = rss
                time.sleep(0.25)
            seconds = time.perf_counter() - started
            mib["end"] = tree_rss(proc.pid) / 2**20
            left, _ = admin.depth(name)
            log_lines = proc.log_lines()
        mark = mib.get("at_50k", mib["start"])
        growth = (mib["end"] - mark) / mark
        return {"count": count, "output": done, "source_left": left, "seconds": round(seconds, 1),
                "msg_per_s": round(done / seconds), "rss_mib": {k: round(v, 1) for k, v in mib.items()},
                "growth_after_50k": round(growth, 3), "log_lines": log_lines,
                "pass": abs(growth) <= TOLERANCE and done == count and left == 0}
    finally:
        admin.cleanup()
        admin.close()


def _top_up(url: str, admin: common.Admin, queue: str, sent: int, count: int, bodies: list[bytes]) -> int:
    """Publish the next chunk when fewer than CHUNK messages are ready; returns how many were sent in all."""
    if sent >= count or admin.depth(queue)[0] >= CHUNK:
        return sent
    n = min(CHUNK, count - sent)
    common.preload(url, f"{queue}.in", "expense.approved", n, lambda i: bodies[i % len(bodies)],
                   f"{queue}-{sent}")
    return sent + n


def report(result: dict) -> str:
    rss = result["rss_mib"]
    return (f"  {result['output']:,} of {result['count']:,} messages in {result['seconds']:.0f} s "
            f"({result['msg_per_s']:,} msg/s); RSS of the esb worker: start {rss['start']} MiB, "
            f"after {WARM:,} {rss.get('at_50k', '-')} MiB, peak {rss['peak']} MiB, end {rss['end']} MiB "
            f"({result['growth_after_50k']:+.1%} since {WARM:,}; pass within ±{TOLERANCE:.0%}): "
            f"{'PASS' if result['pass'] else 'FAIL'}")
