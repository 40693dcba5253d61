"""One worker in this process, or N worker processes kept alive by a supervisor.

The supervisor runs whatever worker command it is given (`esb run` builds it): it knows
processes, not the command line.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from esb.loading.project import load_project
from esb.runtime.connect import make_broker, mask_url
from esb.runtime.runtime import Runtime, open_store_for

log = structlog.get_logger("esb.supervisor")
RESTART_DELAY = 1.0


def stop_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C): the cue to drain and exit."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def run_worker(root: Path, broker_url: str | None, routes: list[str] | None, drain_timeout: float = 30.0) -> None:
    """Run the routes in this process until SIGTERM/SIGINT, then drain in-flight messages."""
    stop = stop_signals()
    project = load_project(root)
    url = broker_url or project.settings.broker_url
    runtime = Runtime(project, make_broker(url, project.settings.heartbeat), routes, store=open_store_for(project),
                      pollers=True)
    runtime.start()
    _tune_gc()
    log.info("worker_ready", pid=os.getpid(), broker=mask_url(url))
    stop.wait()
    log.info("worker_draining", pid=os.getpid())
    runtime.stop(drain_timeout)


def _tune_gc() -> None:
    """Every message allocates short-lived objects; what start-up built lives for the whole run.
    Freezing start-up's objects and collecting the young generation less often keeps the
    collector from walking them again and again."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def supervise(command: Sequence[str], workers: int) -> int:
    """Start `workers` processes running `command` (one worker each); restart one that dies; on
    SIGTERM/SIGINT stop them all and wait; the highest exit code."""
    stop = stop_signals()
    children = [subprocess.Popen(command) for _ in range(workers)]
    log.info("supervisor_started", workers=workers, pids=[c.pid for c in children])
    while not stop.wait(0.5):
        for i, child in enumerate(children):
            if child.poll() is not None:
                log.warning("worker_died", pid=child.pid, exit_code=child.returncode)
                time.sleep(RESTART_DELAY)
                children[i] = subprocess.Popen(command)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = [child.wait() for child in children]
    log.info("supervisor_stopped", exit_codes=codes)
    return max(codes, default=0)
