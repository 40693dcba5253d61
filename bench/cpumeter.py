"""CPU accounting during a measurement: ours (the bench and what it started), RabbitMQ's,
everyone else's, and the time the hypervisor stole from this machine. On a shared 2-core box
another test suite can halve a figure, and another guest on the host can multiply a p99; the bench
says so."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def _machine_ticks() -> tuple[float, int, int]:
    """(CPU seconds of processes: user, nice, system; ticks stolen; all ticks), all cores. Interrupt and
    softirq time is left out of the first: the kernel's share of our own loopback traffic shows up
    there, not on any process. Stolen ticks are those the hypervisor gave another guest while this
    machine wanted to run: no process here shows them, yet every wake-up waits for them."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system = fields[:3]
    steal = fields[7] if len(fields) > 7 else 0
    return (user + nice + system) / _TICK, steal, sum(fields[:8])


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (ppid, command name, cpu seconds so far)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        rest = text[text.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(rest[1]), name, (int(rest[11]) + int(rest[12])) / _TICK)
    return table


def _tree(table: dict[int, tuple[int, str, float]], root: int) -> set[int]:
    ours = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in table.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    return ours


def process_tree(pid: int) -> set[int]:
    """`pid` and all its descendants, as they are now."""
    return _tree(_processes(), pid)


def _threads(pids: set[int]) -> tuple[float, float, int]:
    """(user s, system s, context switches) summed over every thread of `pids`."""
    user = system = switches = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            user += int(fields[11])
            system += int(fields[12])
            for line in status.splitlines():
                if line.endswith("ctxt_switches:") or "ctxt_switches:" in line:
                    switches += int(line.split()[1])
    return user / _TICK, system / _TICK, switches


class CpuMeter:
    """Started when a measurement starts; `read` at its end. `subject`: the pid under test (its tree)."""

    def __init__(self, subject: int | None = None):
        self.subject = subject
        self.machine = _machine_ticks()
        self.table = _processes()
        self.threads = _threads(_tree(self.table, subject)) if subject is not None else None

    def read(self, wall: float) -> dict:
        """Cores used on average over `wall` seconds: by the bench's processes, RabbitMQ, others."""
        busy, steal, ticks = (b - a for a, b in zip(self.machine, _machine_ticks(), strict=True))
        table = _processes()
        ours = _tree(table, os.getpid())

        def delta(pids):
            return sum(table[p][2] - self.table.get(p, (0, "", 0.0))[2] for p in pids)
        rabbit = [p for p, (_, name, _) in table.items() if name in ("beam.smp", "erl_child_setup", "epmd")]
        kernel = [p for p, (ppid, _, _) in table.items() if ppid == 2]  # kworker, ksoftirqd: our traffic too
        mine, broker, kthreads = delta(ours), delta(rabbit), delta(kernel)
        wall = max(wall, 1e-9)
        result = {"cores": CORES, "bench_and_workers": round(mine / wall, 2), "rabbitmq": round(broker / wall, 2),
                  "kernel_threads": round(kthreads / wall, 2), "rabbitmq_cpu_s": round(broker, 3),
                  "others": round(max(busy - mine - broker - kthreads, 0.0) / wall, 2), "total": round(busy / wall, 2),
                  "steal_pct": round(100 * steal / max(ticks, 1), 2)}
        if self.subject is not None:
            tree = _tree(table, self.subject)
            result["subject_cpu_s"] = round(delta(tree), 3)
            user, system, switches = (b - a for a, b in zip(self.threads, _threads(tree), strict=True))
            result.update(subject_user_s=round(user, 3), subject_sys_s=round(system, 3), subject_ctx_switches=switches)
        return result
