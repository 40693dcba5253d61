"""The supervisor runs the worker command it is given (it knows processes, not esb's command line)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from esb.runtime.supervisor import supervise


def test_the_supervisor_runs_the_command_it_is_given_in_each_worker_and_stops_them_on_sigterm(tmp_path: Path):
    script = ("import os, pathlib, sys, time; "
              f"pathlib.Path({str(tmp_path)!r}, str(os.getpid())).write_text(' '.join(sys.argv[1:]) + ' ' + "
              "os.environ['ESB_WORKER_INDEX']); time.sleep(60)")
    command = [sys.executable, "-c", script, "--any", "argument"]
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def stop_when_both_ran():
        deadline = time.monotonic() + 20
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
    stopper = threading.Thread(target=stop_when_both_ran)
    stopper.start()
    try:
        code = supervise(command, workers=2)
    finally:
        stopper.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # each worker is told its index (its core under cpu.affinity)
    assert sorted(path.read_text() for path in tmp_path.iterdir()) == ["--any argument 0", "--any argument 1"]
    assert code == -signal.SIGTERM  # the workers were stopped by the supervisor's SIGTERM


def test_a_worker_that_keeps_dying_makes_the_supervisor_give_up_with_a_clear_exit(tmp_path: Path):
    deaths = tmp_path / "deaths"
    script = f"open({str(deaths)!r}, 'a').write('x'); raise SystemExit(1)"
    started = time.monotonic()
    code = supervise([sys.executable, "-c", script], workers=1, crash_limit=3, crash_window=30, restart_delay=0.05)
    assert code == 3
    assert deaths.read_text() == "xxx"  # started three times, then no more
    assert time.monotonic() - started < 15
