"""py-spy on a worker process during a measured run: top functions by own time, time per thread."""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
from pathlib import Path

from bench import common

PY_SPY = shutil.which("py-spy", path=str(Path(common.PYTHON).parent)) or shutil.which("py-spy")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def available() -> bool:
    return PY_SPY is not None


class Recorder:
    """`py-spy record --format raw --threads` from start() to stop().

    gil=True samples only the thread holding the GIL: each sample is Python CPU time, so own time
    per function is where the interpreter's time goes. idle=True (with gil=False) samples every
    thread, waiting or not: where the wall time of each thread goes.
    """

    def __init__(self, pid: int, output: str, rate: int = 200, gil: bool = True, idle: bool = False):
        self.pid, self.output, self.rate, self.gil, self.idle = pid, output, rate, gil, idle
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [PY_SPY, "record", "--pid", str(self.pid), "--format", "raw", "--threads", "--rate",
                   str(self.rate), "--nonblocking", "-o", self.output]
        if self.gil:
            command.append("--gil")
        if self.idle:  # wall time: every thread, waiting or not
            command.append("--idle")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)

    def report(self, top: int = 25) -> dict:
        return summarize(self.output, top)


def summarize(path: str, top: int = 25) -> dict:
    """Own time (leaf frames) and inclusive time per function, and samples per thread name."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    total = 0
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return {"error": f"py-spy wrote no {path}"}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "?"
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            thread = frames.pop(0)
        frames = [_short(f) for f in frames]
        total += count
        threads[_thread_kind(frames, thread)] += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    share = (lambda n: round(100.0 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "own": [(name, share(n)) for name, n in own.most_common(top)],
        "inclusive": [(name, share(n)) for name, n in inclusive.most_common(top)],
        "threads": [(name, share(n)) for name, n in threads.most_common()],
    }


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match.group("file")
    for marker in ("/site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({file})"


def _thread_kind(frames: list[str], thread: str) -> str:
    """Group threads by role: py-spy labels them `thread (TID): NAME`; esb names its threads."""
    name = thread.partition("): ")[2]
    if name == "esb-broker-io" or any("IOLoop.start" in f for f in frames):
        return "broker I/O thread"
    if name.startswith("esb-") or any("concurrent/futures/thread.py" in f for f in frames):
        return "route pool threads"
    return name or "main thread"
