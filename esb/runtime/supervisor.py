"""One worker in this process, or N worker processes kept alive by a supervisor.

The supervisor runs whatever worker command it is given (`esb run` builds it): it knows
processes, not the command line.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from esb.loading.project import load_project
from esb.runtime.affinity import WORKER_INDEX, pin_worker
from esb.runtime.connect import make_broker
from esb.runtime.middleware import LogMiddleware
from esb.runtime.reload import Reloader
from esb.runtime.runtime import Runtime, open_store_for
from esb.runtime.urls import mask_url

log = structlog.get_logger("esb.supervisor")
RESTART_DELAY = 1.0      # before the first restart of a worker; doubled each time it dies young
MAX_RESTART_DELAY = 60.0
STEADY_AFTER = 60.0      # a worker that lived this long starts its restart delays afresh
HARD_EXIT_MARGIN = 10.0  # seconds past the drain timeout before a worker is ended regardless
CANNOT_START = 2         # a worker's exit code when the project does not load: restarting cannot help
CRASH_LOOP = 3           # the supervisor's exit code when a worker keeps dying
CRASH_LIMIT = 5          # deaths of one worker ...
CRASH_WINDOW = 60.0      # ... within this many seconds are a crash loop: restarting more will not help


def stop_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C): the cue to drain and exit."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def run_worker(root: Path, broker_url: str | None, routes: list[str] | None, drain_timeout: float = 30.0,
               metrics_listen: str = "off", pollers: bool | None = None, webhooks: bool = True) -> None:
    """Run the routes in this process until SIGTERM/SIGINT, then drain in-flight messages for at
    most `drain_timeout` seconds: whatever a step is doing, the process ends by then (what was not
    settled stays unacked, and the broker redelivers it). Pollers: those feeding the routes that run
    (None), every one (True), none (False). Metrics are counted when this process
    serves them (`metrics_listen`) or a supervisor does (PROMETHEUS_MULTIPROC_DIR is set)."""
    from esb.observability import metrics_wanted
    stop = stop_signals()
    project = load_project(root)
    pin_worker(project.settings.cpu_affinity)  # before any thread starts: they inherit the core
    url = broker_url or project.settings.broker_url
    counted = metrics_wanted(metrics_listen)
    middleware = [LogMiddleware()]
    if counted:
        from esb.observability.metrics import MetricsMiddleware
        middleware.append(MetricsMiddleware())
        from esb.observability.server import serve_unless_supervised
        serve_unless_supervised(metrics_listen)  # before anything runs: a port in use stops start-up (exit 2)
    if project.settings.tracing_exporter != "none":  # OpenTelemetry is imported only when asked for
        from esb.observability.tracing import TracingMiddleware
        middleware.append(TracingMiddleware.from_settings(project.settings))
    runtime = Runtime(project, make_broker(url, project.settings.heartbeat), routes, store=open_store_for(project),
                      pollers={None: True, True: "all", False: False}[pollers], middleware=middleware)
    runtime.start()
    served = _serve_webhooks(project, runtime, routes) if webhooks else None  # esb.inbound
    reloader = Reloader(runtime, every=project.settings.reload_every)
    reloader.start()
    signal.signal(signal.SIGHUP, lambda *_: reloader.request())
    probe = None
    if counted:
        from esb.observability.health import Probe
        probe = Probe(runtime)
        probe.start()
    _tune_gc()
    log.info("worker_ready", pid=os.getpid(), broker=mask_url(url))
    stop.wait()
    log.info("worker_draining", pid=os.getpid(), timeout_s=drain_timeout)
    if served is not None:  # no new requests while the routes drain
        served.stop()
    reloader.stop()
    if probe is not None:
        probe.stop()
    # A step stuck in C code may never give the interpreter back: faulthandler's own thread ends
    # the process (with the stacks on stderr) if draining and exiting overrun by HARD_EXIT_MARGIN.
    faulthandler.dump_traceback_later(drain_timeout + HARD_EXIT_MARGIN, exit=True)
    runtime.stop(drain_timeout)
    log.info("worker_stopped", pid=os.getpid())


def _serve_webhooks(project, runtime: Runtime, routes: list[str] | None):
    """The webhook server of the routes with source.http, on the runtime's broker; a server that cannot
    start (its port in use, a secret unset) stops the runtime and is raised (ConfigError: exit 2)."""
    from esb.inbound.http import serve_webhooks
    try:
        return serve_webhooks(project, runtime.broker, routes)
    except Exception:
        runtime.stop(0)
        raise


def _tune_gc() -> None:
    """Every message allocates short-lived objects; what start-up built lives for the whole run.
    Freezing start-up's objects and collecting the young generation less often keeps the
    collector from walking them again and again."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def supervise(command: Sequence[str], workers: int, drain_timeout: float = 30.0,
              crash_limit: int = CRASH_LIMIT, crash_window: float = CRASH_WINDOW,
              restart_delay: float = RESTART_DELAY, on_death: Callable[[int], None] | None = None) -> int:
    """Start `workers` processes running `command` (one worker each); restart one that dies, after
    a delay that doubles while it keeps dying young; stop everything when one cannot start (exit 2)
    or one died `crash_limit` times within `crash_window` seconds (exit 3). On SIGTERM/SIGINT stop
    them all and wait (killing one that overruns its drain); the highest exit code. `on_death(pid)`
    is told of each worker that ended (its live metrics are dropped)."""
    stop = stop_signals()
    slots = [_Slot(command, restart_delay, crash_limit, crash_window, on_death, index) for index in range(workers)]
    signal.signal(signal.SIGHUP, lambda *_: [slot.signal(signal.SIGHUP) for slot in slots])  # reload: each worker
    log.info("supervisor_started", workers=workers, pids=[slot.process.pid for slot in slots])
    gave_up = 0
    while not stop.wait(0.5):
        codes = [slot.check() for slot in slots]
        if CANNOT_START in codes:
            log.error("worker_cannot_start", hint="the project does not load: `esb routes validate` says why")
            break
        if CRASH_LOOP in codes:
            log.error("worker_crash_loop", deaths=crash_limit, within_s=crash_window,
                      hint="a worker keeps dying: its last lines above say why; esb run gives up")
            gave_up = CRASH_LOOP
            break
    for slot in slots:
        slot.terminate()
    codes = [slot.wait(drain_timeout + HARD_EXIT_MARGIN) for slot in slots]
    log.info("supervisor_stopped", exit_codes=codes)
    return gave_up or max(codes, default=0)


class _Slot:
    """One worker process and its restarts."""

    def __init__(self, command: Sequence[str], restart_delay: float, crash_limit: int, crash_window: float,
                 on_death: Callable[[int], None] | None = None, index: int = 0):
        self.command = command
        self.on_death = on_death or (lambda _pid: None)
        self.env = {**os.environ, WORKER_INDEX: str(index)}  # its core under cpu.affinity
        self.process = subprocess.Popen(command, env=self.env)
        self.started = time.monotonic()
        self.first_delay = self.delay = restart_delay
        self.restart_at: float | None = None
        self.deaths: deque[float] = deque(maxlen=crash_limit)
        self.crash_window = crash_window

    def check(self) -> int | None:
        """Restart the worker if it died and its delay is over; CANNOT_START if it cannot start,
        CRASH_LOOP if it keeps dying."""
        if self.restart_at is not None:
            if time.monotonic() >= self.restart_at:
                self.process = subprocess.Popen(self.command, env=self.env)
                self.started, self.restart_at = time.monotonic(), None
            return None
        code = self.process.poll()
        if code is None:
            return None
        self.on_death(self.process.pid)
        if code == CANNOT_START:
            return code
        now = time.monotonic()
        self.deaths.append(now)
        if len(self.deaths) == self.deaths.maxlen and now - self.deaths[0] <= self.crash_window:
            log.warning("worker_died", pid=self.process.pid, exit_code=code)
            return CRASH_LOOP
        if now - self.started >= STEADY_AFTER:
            self.delay = self.first_delay
        log.warning("worker_died", pid=self.process.pid, exit_code=code, restart_in_s=self.delay)
        self.restart_at = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, MAX_RESTART_DELAY)
        return None

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("worker_killed", pid=self.process.pid, hint="it did not stop within its drain timeout")
            self.process.kill()
            return self.process.wait()
