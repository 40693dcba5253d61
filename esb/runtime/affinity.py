"""`cpu.affinity`: pin each worker process to one core.

A worker runs Python on one core at a time (the interpreter lock). Left free, its threads hand
the lock to a thread the kernel woke on the other core, and every hand-off costs a cross-core
wake-up: on the I/O route (64 route threads, the store's committer, pika's I/O thread) that
doubled the CPU per message. Pinned, the hand-offs stay on one core. Only for machines whose
cores esb owns: containers that all see the same cores would all pin to the first one.
"""

from __future__ import annotations

import os

import structlog

log = structlog.get_logger("esb.runtime")

WORKER_INDEX = "ESB_WORKER_INDEX"  # set by the supervisor of `esb run --workers N` for worker i


def core_for(setting: str, index: int, allowed: list[int]) -> int | None:
    """The core of worker `index`: None for "off"; for "auto" the allowed cores round robin; for a
    list ("0,2") that list round robin."""
    if setting == "off":
        return None
    cores = allowed if setting == "auto" else [int(core) for core in setting.split(",")]
    return cores[index % len(cores)]


def pin_worker(setting: str) -> int | None:
    """Pin this process to its core before it starts any thread (threads inherit it); the core or None."""
    if setting == "off" or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    core = core_for(setting, int(os.environ.get(WORKER_INDEX, "0")), allowed)
    if core not in allowed:
        log.warning("cpu_affinity_ignored", core=core, allowed=allowed,
                    hint="cpu.affinity names a core this process may not use; the worker runs unpinned")
        return None
    os.sched_setaffinity(0, {core})
    log.info("cpu_pinned", pid=os.getpid(), core=core)
    return core
