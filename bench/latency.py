"""Scenario 2: end-to-end latency through esb (1 worker, the JSON→XML route) at a fixed rate.

A paced publisher and the sink share one SelectConnection in the bench process (two channels),
so the send time in the header and the receive time come from the same clock
(time.perf_counter_ns). Latency = sink receive − just before basic_publish: the broker hop in,
the worker, the broker hop out. The first second is a warm-up and is not counted.

The bench process runs the paced run with its garbage collector off: a full collection of its
own heap (pika, the results of the scenarios before) took ~20 ms on a 2 GHz host and landed at
the same message in every run, esb's and the baseline's alike, as a stall that was the bench's,
not the process under test's.
"""

from __future__ import annotations

import contextlib
import gc
import time

import pika

from bench import common, relaybench

HEADER = "x-bench-sent-ns"


class Paced:
    def __init__(self, url: str, exchange: str, sink: str, rate: float, total: int, warmup: int):
        self.exchange, self.sink, self.rate, self.total, self.warmup = exchange, sink, rate, total, warmup
        self.sent = 0
        self.latencies_ms: list[float] = []
        self.received = 0
        self.error: str | None = None
        self.began = 0.0
        self.finished = 0.0
        self.publisher = None
        self.connection = pika.SelectConnection(
            pika.URLParameters(url), on_open_callback=self._on_open,
            on_open_error_callback=lambda _c, e: self._fail(f"cannot connect: {e}"),
            on_close_callback=self._on_closed)

    def _on_closed(self, _connection, reason) -> None:
        if self.received < self.total and not self.error:
            self.error = f"the connection closed: {reason} ({self.received} of {self.total} received)"
        self.connection.ioloop.stop()

    def run(self, timeout: float) -> None:
        self.connection.ioloop.call_later(timeout, lambda: self._fail("timed out waiting for the outputs"))
        self.connection.ioloop.start()
        if self.error:
            raise RuntimeError(self.error)

    def _fail(self, why: str) -> None:
        self.error = self.error or f"{why} ({self.received} of {self.total} received)"
        if self.connection.is_open:
            self.connection.close()
        else:
            self.connection.ioloop.stop()

    def _on_open(self, connection) -> None:
        connection.channel(on_open_callback=self._on_consumer)

    def _on_consumer(self, channel) -> None:
        channel.basic_consume(self.sink, self._on_message, auto_ack=True,
                              callback=lambda _: self.connection.channel(on_open_callback=self._on_publisher))

    def _on_publisher(self, channel) -> None:
        self.publisher = channel
        channel.confirm_delivery(lambda _frame: None, callback=lambda _: self._start())

    def _start(self) -> None:
        self.began = time.perf_counter()
        self._tick()

    def _tick(self) -> None:
        if self.publisher is None or not self.publisher.is_open:
            self._fail("the publishing channel closed")
            return
        due = min(self.total, int((time.perf_counter() - self.began) * self.rate) + 1)
        while self.sent < due:
            i = self.sent
            body = common.expense_body(i)
            self.publisher.basic_publish(self.exchange, "expense.approved", body, pika.BasicProperties(
                delivery_mode=2, content_type="application/json", message_id=f"lat-{i}",
                headers={HEADER: time.perf_counter_ns()}))
            self.sent += 1
        if self.sent < self.total:
            self.connection.ioloop.call_later(0.001, self._tick)

    def _on_message(self, _channel, _method, properties, _body) -> None:
        now = time.perf_counter_ns()
        sent = (properties.headers or {}).get(HEADER)
        index = int(properties.message_id.rsplit("-", 1)[1])
        self.received += 1
        if sent is not None and index >= self.warmup:
            self.latencies_ms.append((now - sent) / 1e6)
        if self.received >= self.total:
            self.finished = time.perf_counter()
            self.connection.close()


@contextlib.contextmanager
def _collector_off():
    gc.collect()
    gc.freeze()  # what exists now is never scanned again; the run allocates little that lives
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def esb_latency(url: str, rate: float, seconds: float, warmup_seconds: float = 1.0) -> dict:
    return _latency(url, rate, seconds, warmup_seconds, baseline_prefetch=None)


def baseline_latency(url: str, rate: float, seconds: float, prefetch: int, warmup_seconds: float = 1.0) -> dict:
    """The same through bench/relay.py: what the broker and pika alone contribute."""
    return _latency(url, rate, seconds, warmup_seconds, baseline_prefetch=prefetch)


def _latency(url: str, rate: float, seconds: float, warmup_seconds: float, baseline_prefetch: int | None) -> dict:
    admin = common.Admin(url)
    try:
        root, name, topology, sink = relaybench.relay_project(url, 16, "bl")
        admin.declare_topology(topology)
        admin.queue(sink)  # the route publishes to it through the default exchange
        if baseline_prefetch is None:
            proc = common.esb_run(root, url, 1, "esb-latency")
        else:
            proc = common.Proc("baseline-latency", [
                common.PYTHON, "-m", "bench.relay", "--url", url, "--queue", name, "--exchange", "",
                "--routing-key", sink, "--prefetch", str(baseline_prefetch)])
        with common.running(proc):
            common.Stopwatch(admin, name, sink, 0).wait_consumers(1)
            total, warmup = int(rate * (seconds + warmup_seconds)), int(rate * warmup_seconds)
            paced = Paced(url, f"{name}.in", sink, rate, total, warmup)
            meter = common.CpuMeter(proc.pid)
            with _collector_off():
                paced.run(timeout=seconds + warmup_seconds + 60)
            cpu = meter.read(paced.finished - paced.began)
        values = sorted(paced.latencies_ms)
        return {
            "rate": rate, "counted": len(values), "warmup": warmup,
            "achieved_rate": round(total / (paced.finished - paced.began), 1),
            "p50_ms": round(common.percentile(values, 50), 2), "p90_ms": round(common.percentile(values, 90), 2),
            "p99_ms": round(common.percentile(values, 99), 2), "p999_ms": round(common.percentile(values, 99.9), 2),
            "max_ms": round(values[-1], 2) if values else None, "cpu": cpu, "log_lines": proc.log_lines(),
        }
    finally:
        admin.cleanup()
        admin.close()
