"""What every bench scenario shares: the sample message, temp projects, RabbitMQ admin, preloading,
the depth-polling stopwatch, and the processes the bench starts (and always stops)."""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pika
import pika.exceptions

from bench.cpumeter import CpuMeter
from esb.transform import jsoncodec

ROOT = Path(__file__).resolve().parent.parent          # the project root: `python -m bench` runs from here
VAR = ROOT / "var"
LOGS = VAR / "bench-logs" / time.strftime(f"%Y%m%d-%H%M%S-{os.getpid()}")  # this run's own folder
PYTHON = sys.executable
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# -- the message ------------------------------------------------------------------------------

_LINES = [
    ("6602.03", "差旅费-上海至北京高铁往返", "1106.00"),
    ("6602.03", "差旅费-北京住宿3晚", "1680.00"),
    ("6601.05", "业务招待费-客户晚餐", "1074.50"),
    ("6602.11", "市内交通费-出租车", "86.40"),
    ("6602.07", "办公用品-打印纸及墨盒", "329.90"),
]


def expense(i: int) -> dict:
    """A realistic approved expense claim (~1 KB as UTF-8 JSON), amounts as Decimal."""
    cents = i % 997
    lines = [{"line_no": n + 1, "account": account, "description": text,
              "amount": Decimal(amount) + Decimal(cents) / 100, "tax_rate": Decimal("0.06"),
              "invoice_no": f"INV-3100{n}{i:08d}"}
             for n, (account, text, amount) in enumerate(_LINES)]
    return {
        "claim_id": f"EXP-2024-{i:07d}",
        "employee": {"id": f"E{i % 50000:05d}", "name": "张伟", "email": "zhang.wei@example.com.cn"},
        "department": "华东销售部",
        "cost_center": "CC-3100",
        "approved_at": "2024-03-18T10:12:00+08:00",
        "approver": {"id": "E00017", "name": "李娜"},
        "currency": "CNY",
        "lines": lines,
        "total": sum((line["amount"] for line in lines), Decimal("0.00")),
    }


def expense_body(i: int) -> bytes:
    return jsoncodec.dumps(expense(i)).encode("utf-8")


# -- temp projects -----------------------------------------------------------------------------

_PROJECTS: list[Path] = []


def write_project(files: dict[str, str], prefix: str) -> Path:
    """A temp project folder (removed by remove_projects at the end of the bench)."""
    root = Path(tempfile.mkdtemp(prefix=f"esb-bench-{prefix}-"))
    _PROJECTS.append(root)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


_SCHEMAS: list[str] = []  # PostgreSQL schemas of the bench's projects, dropped by remove_projects


def postgres_store_url() -> str:
    """A URL of the bench's PostgreSQL whose store tables go into a new schema of their own."""
    import psycopg
    schema = f"esb_bench_{uid()}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    _SCHEMAS.append(schema)
    return f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{schema}"


def create_store(root: Path) -> None:
    """Create the project's SQLite store before the workers start, as a deployed store already exists.

    Two `esb run --workers 2` children creating a fresh store at the same moment: one fails
    ("database is locked" from PRAGMA journal_mode = WAL), exits, and is restarted a second
    later (reported; that start-up race is not what the throughput figures are about).
    """
    from esb.store import SqliteStore
    SqliteStore(root / "var" / "idempotency.sqlite3").close()


def remove_projects() -> None:
    while _PROJECTS:
        shutil.rmtree(_PROJECTS.pop(), ignore_errors=True)
    if _SCHEMAS:
        import psycopg
        with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
            while _SCHEMAS:
                db.execute(f"DROP SCHEMA IF EXISTS {_SCHEMAS.pop()} CASCADE")


def config_yaml(url: str, store_url: str | None = None) -> str:
    """store_url: a PostgreSQL store at that URL; None: the project's SQLite file."""
    store = f"{{kind: postgres, url: '{store_url}'}}" if store_url else "{kind: sqlite, path: var/idempotency.sqlite3}"
    return (f"broker: {{url: '{url}'}}\n"
            f"store: {store}\n"
            "logging: {level: warning}\n")


def uid() -> str:
    return uuid.uuid4().hex[:8]


# -- RabbitMQ admin (one blocking connection) -------------------------------------------------

class Admin:
    """Declares, measures and deletes what a scenario uses; remembers it all for cleanup()."""

    def __init__(self, url: str):
        self.url = url
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def declare_topology(self, topology) -> None:
        """An esb Topology, declared exactly as RabbitBroker.declare does (same queue arguments)."""
        from esb.runtime.rabbit import is_quorum, queue_arguments
        for name, kind in topology.exchanges:
            self.exchange(name, kind)
        for queue in topology.queues:  # one node: quorum only where the route asks for it
            self.queue(queue.name, queue_arguments(queue, is_quorum(queue, nodes=1)))
        for binding in topology.bindings:
            self.channel.queue_bind(binding.queue, binding.exchange, binding.routing_key)

    def exchange(self, name: str, kind: str = "topic") -> None:
        self.channel.exchange_declare(name, kind, durable=True)
        self.exchanges.append(name)

    def queue(self, name: str, arguments: dict | None = None, bind_to: str | None = None) -> None:
        self.channel.queue_declare(name, durable=True, arguments=arguments or None)
        self.queues.append(name)
        if bind_to:
            self.channel.queue_bind(name, bind_to, "#")

    def depth(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers); reconnects once if someone closed our connection."""
        try:
            ok = self.channel.queue_declare(queue, passive=True)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelWrongStateError,
                pika.exceptions.ConnectionWrongStateError):
            ok = self._open().queue_declare(queue, passive=True)
        return ok.method.message_count, ok.method.consumer_count

    def peek(self, queue: str):
        """One message (left in the queue): (properties, body), or None."""
        method, properties, body = self.channel.basic_get(queue, auto_ack=False)
        if method is None:
            return None
        self.channel.basic_nack(method.delivery_tag, requeue=True)
        return properties, body

    def cleanup(self) -> None:
        for name in reversed(self.queues):
            self._retry(lambda ch, name=name: ch.queue_delete(name))
        for name in reversed(self.exchanges):
            self._retry(lambda ch, name=name: ch.exchange_delete(name))
        self.queues.clear()
        self.exchanges.clear()

    def _retry(self, action) -> None:
        """Once more on a fresh connection: a test may have closed ours (close_all_connections)."""
        for _ in range(2):
            try:
                action(self._open())
                return
            except pika.exceptions.AMQPError:
                with contextlib.suppress(Exception):
                    self.connection.close()

    def _open(self):
        if not self.connection.is_open:
            self.connection = pika.BlockingConnection(pika.URLParameters(self.url))
        if not self.channel.is_open:
            self.channel = self.connection.channel()
        return self.channel

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


# -- preloading with pipelined confirms ------------------------------------------------------

def preload(url: str, exchange: str, routing_key: str, count: int,
            body: Callable[[int], bytes], prefix: str, window: int = 2000) -> float:
    """Publish `count` persistent messages with at most `window` unconfirmed; returns seconds taken."""
    started = time.perf_counter()
    state = {"sent": 0, "confirmed": 0, "error": None}
    outstanding: collections.deque[int] = collections.deque()
    acked: set[int] = set()
    properties = [None]

    def pump(channel):
        while state["sent"] < count and state["sent"] - state["confirmed"] < window:
            i = state["sent"]
            channel.basic_publish(exchange, routing_key, body(i), pika.BasicProperties(
                delivery_mode=2, content_type="application/json", message_id=f"{prefix}-{i}"))
            state["sent"] += 1
            outstanding.append(state["sent"])  # pika's delivery tags start at 1

    def on_confirm(frame):
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            state["error"] = f"the broker nacked publish {method.delivery_tag}"
            connection.close()
            return
        if method.multiple:
            while outstanding and outstanding[0] <= method.delivery_tag:
                outstanding.popleft()
                state["confirmed"] += 1
        else:
            acked.add(method.delivery_tag)
            while outstanding and outstanding[0] in acked:
                acked.discard(outstanding.popleft())
                state["confirmed"] += 1
        if state["confirmed"] >= count:
            connection.close()
        else:
            pump(properties[0])

    def on_channel(channel):
        properties[0] = channel
        channel.confirm_delivery(on_confirm, callback=lambda _: pump(channel))

    def on_error(_connection, error):
        state["error"] = f"cannot connect: {error}"
        connection.ioloop.stop()

    connection = pika.SelectConnection(
        pika.URLParameters(url), on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_open_error_callback=on_error, on_close_callback=lambda *_: connection.ioloop.stop())
    connection.ioloop.start()
    if state["error"] or state["confirmed"] < count:
        raise RuntimeError(f"preload failed: {state['error'] or 'the connection closed early'}")
    return time.perf_counter() - started


# -- the stopwatch ---------------------------------------------------------------------------

class Stopwatch:
    """Start and end of a relay run, read from queue depths (no consumer of ours on the output).

    start = the first poll where the preloaded source queue holds fewer than `count` ready
    messages (a consumer took some), end = the first poll where the output queue holds `count`.
    Each is taken as the midpoint between that poll and the one before (error <= poll/2 + RTT).
    """

    def __init__(self, admin: Admin, source: str, output: str, count: int, poll: float = 0.01):
        self.admin, self.source, self.output, self.count, self.poll = admin, source, output, count, poll
        self.start: float | None = None
        self.end: float | None = None
        self.consumers_seen: list[tuple[float, int]] = []   # (time, consumer count) as it changed
        self.cpu: dict | None = None                           # cores used during the run, by whom
        self.all_consuming: tuple[float, int] | None = None    # (when, outputs by then) once all subscribed

    def run(self, process: subprocess.Popen | None, timeout: float, stall: float = 30.0,
            on_start: Callable[[], None] | None = None, consumers: int = 1) -> float:
        """Poll until the output holds `count`; returns end - start. With `consumers` > 1 (workers),
        also notes when the last one subscribed and how many outputs there were by then."""
        previous = time.perf_counter()
        deadline = previous + timeout
        last_out, last_change = -1, previous
        seen = -1
        meter = None
        while True:
            now = time.perf_counter()
            if self.start is None or seen < consumers:
                ready, seen_now = self.admin.depth(self.source)
                if seen_now != seen:
                    seen = seen_now
                    self.consumers_seen.append((now, seen))
                    if seen >= consumers and self.start is not None:
                        self.all_consuming = ((previous + now) / 2, last_out)
                if self.start is None and ready < self.count:
                    self.start = (previous + now) / 2
                    if seen >= consumers:
                        self.all_consuming = (self.start, 0)
                    meter = CpuMeter(process.pid if process is not None else None)
                    if on_start:
                        on_start()
            out, _ = self.admin.depth(self.output)
            if out >= self.count:
                self.end = (previous + now) / 2
                if meter is not None:
                    self.cpu = meter.read(now - self.start)
                return self.end - self.start
            if out != last_out:
                last_out, last_change = out, now
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the process under test exited ({process.returncode}) after {out} outputs")
            if now > deadline or (self.start is not None and now - last_change > stall):
                raise RuntimeError(f"timed out: {out} of {self.count} outputs after {now - (self.start or now):.1f}s")
            previous = now
            time.sleep(self.poll)

    def steady_rate(self) -> float | None:
        """Outputs per second once every consumer had subscribed (None if that never happened)."""
        if self.all_consuming is None or self.end is None or self.end <= self.all_consuming[0]:
            return None
        at, out = self.all_consuming
        return (self.count - max(out, 0)) / (self.end - at)

    def wait_consumers(self, n: int, timeout: float = 30.0) -> float:
        """Poll until the source queue has n consumers; return when (for worker start-up skew)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.admin.depth(self.source)[1] >= n:
                return time.perf_counter()
            time.sleep(self.poll)
        raise RuntimeError(f"{n} consumers did not appear on {self.source}")


# -- processes ---------------------------------------------------------------------------------

def log_file(name: str):
    if not LOGS.exists():
        LOGS.mkdir(parents=True)
        for old in sorted(LOGS.parent.iterdir())[:-10]:  # keep the logs of the last 10 runs
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    return open(LOGS / f"{name}.log", "wb")  # noqa: SIM115 - closed by Proc.stop


_RUNS = itertools.count(1)


class Proc:
    """A process the bench started: stopped (SIGTERM, then SIGKILL) by its own pid only."""

    def __init__(self, name: str, command: list[str], *, stdin=None, stdout=None, env: dict | None = None):
        self.name = f"{next(_RUNS):02d}-{name}"  # its log: var/bench-logs/<this run>/NN-name.log
        self.log = log_file(self.name)
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=stdin, stdout=stdout or self.log,
                                        stderr=self.log, env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()
        return self.process.returncode

    @property
    def log_path(self) -> Path:
        return LOGS / f"{self.name}.log"

    def log_lines(self) -> int:
        """Lines the process wrote (an esb worker logs at warning: every line is a warning or an error)."""
        if not self.log.closed:
            self.log.flush()
        return sum(1 for line in self.log_path.read_text(errors="replace").splitlines() if line.strip())

    def tail(self, lines: int = 15) -> str:
        if not self.log.closed:
            self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def esb_run(root: Path, url: str, workers: int, name: str) -> Proc:
    """`esb run --workers N`, as an operator starts it, logging at warning."""
    return Proc(name, [PYTHON, "-m", "esb.cli.main", "--root", str(root), "--log-level", "warning", "run",
                       "--workers", str(workers), "--broker", url])


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One bench at a time on this machine: two would share the CPU and halve each other's figures."""
    import fcntl
    VAR.mkdir(exist_ok=True)
    with open(VAR / "bench.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            print(f"another bench is running (pid {lock.read().strip() or '?'}): waiting for it to finish", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def rabbit_version() -> str:
    try:
        with pika.BlockingConnection(pika.URLParameters(DEFAULT_URL)) as connection:
            props = connection._impl.server_properties  # noqa: SLF001 - only for the report
            return props.get("version", b"?").decode() if isinstance(props.get("version"), bytes) \
                else str(props.get("version"))
    except Exception:  # noqa: BLE001 - informational
        return "?"


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def late_wakeup_ms(count: int = 1000, nap: float = 0.001) -> float:
    """p99 of how late a thread wakes from a 1 ms sleep, in ms. A quiet host wakes it within ~0.2 ms;
    a busy or throttled one (other guests on the host, which no process here shows) much later,
    and every latency figure carries that delay twice (publisher and sink)."""
    late = []
    for _ in range(count):
        started = time.perf_counter()
        time.sleep(nap)
        late.append((time.perf_counter() - started - nap) * 1000)
    return percentile(sorted(late), 99)
