"""Where the CPU of the JSON→XML relay goes, per message, without a broker: `python -m bench.parts [-n 3000]`.

The route is the relay bench's (bench/relaybench.py), loaded as `esb run` loads it; the message is
the bench's 1 KiB expense claim. Each part is timed on its own, best of `--rounds`:

  decode     the body bytes → the JSON value (esb.runtime.envelope.decode_body: jsoncodec)
  transform  JSON → XML text (esb.transform.xmljson.json_to_xml, as the json_to_xml step calls it)
  encode     the XML text → bytes (envelope.encode_body)
  esb        everything else the worker does: RouteRunner.handle on the broker thread (envelope,
             hooks with the log and metrics middleware as `esb run` installs them, steps, state,
             to_outgoing), RabbitBroker.publish/_publish, the confirm (_on_confirm) and the ack
             (settler, _settle, _flush_acks). Measured as one whole run through that real code
             with a stand-in pika channel, minus the three parts above.
  pika       pika's frame codec for one message: decoding Basic.Deliver + header + body and the
             broker's Basic.Ack (confirm), marshalling Basic.Publish + header + body and our
             Basic.Ack. A lower bound of pika's cost: its channel/connection dispatch and the
             socket calls are not in it (they need a broker; bench/relay.py measures pika whole).
"""

from __future__ import annotations

import argparse
import gc
import time
from types import SimpleNamespace

import pika
import pika.frame
import pika.spec

from bench import common
from bench.relaybench import relay_project
from esb.cli.main import configure_logging
from esb.loading.project import load_project
from esb.message import JSON, XML
from esb.observability.metrics import MetricsMiddleware
from esb.runtime.broker import Delivery
from esb.runtime.envelope import decode_body, encode_body
from esb.runtime.middleware import Hooks, LogMiddleware
from esb.runtime.rabbit import RabbitBroker
from esb.runtime.state import load_key
from esb.runtime.worker import RouteRunner
from esb.transform.xmljson import json_to_xml


class _Channel:
    """Stands in for pika's channel: open, and it does nothing (pika's own cost is timed apart)."""

    is_open = True

    def basic_publish(self, *_args, **_kwargs) -> None:
        pass

    def basic_ack(self, *_args, **_kwargs) -> None:
        pass


class _Loop:
    """Stands in for the I/O loop: callbacks run when `run()` is called (a turn of the loop)."""

    def __init__(self):
        self.callbacks = []

    def add_callback(self, callback) -> None:
        self.callbacks.append(callback)

    def run(self) -> None:
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


def _broker() -> RabbitBroker:
    """A RabbitBroker never connected, on "its own I/O thread" (this one), with a stand-in channel."""
    broker = RabbitBroker(common.DEFAULT_URL)
    broker._thread = __import__("threading").current_thread()  # noqa: SLF001 - commands run at once
    broker._ioloop = _Loop()  # noqa: SLF001
    broker._publisher = _Channel()  # noqa: SLF001
    return broker


def _timed(run, items, rounds: int) -> float:
    """CPU µs per item of `run(item)`, the best of `rounds` passes. CPU time of this thread, not
    wall time: the machine is shared, and time spent descheduled is nobody's cost per message."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time_ns()
        for item in items:
            run(item)
        best = min(best, (time.thread_time_ns() - started) / len(items) / 1000)
    return best


def whole_message(runner: RouteRunner, broker: RabbitBroker, channel: _Channel):
    """One delivery through the worker's real code: handle → publish → confirm → ack → flush."""
    ack = SimpleNamespace(method=pika.spec.Basic.Ack(multiple=False))
    tags = iter(range(1, 1 << 62))

    def run(raw: tuple[bytes, str]) -> None:
        body, message_id = raw
        tag = next(tags)
        broker._outstanding.setdefault(channel, set()).add(tag)  # noqa: SLF001 - as on_message does
        runner._on_delivery(Delivery(body, "application/json", {}, message_id,  # noqa: SLF001
                                     runner.route.source.queue, False, (channel, 0, tag)))
        ack.method.delivery_tag = next(iter(broker._pending))  # noqa: SLF001 - the broker confirms it
        broker._on_confirm(ack)  # noqa: SLF001
        broker._ioloop.run()  # noqa: SLF001 - the ack goes out
    return run


def pika_frames(body: bytes, xml: bytes):
    """pika's codec for one message: a delivery and a confirm in, a publish and an ack out."""
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json", message_id="bx-1")
    incoming = b"".join((
        pika.frame.Method(1, pika.spec.Basic.Deliver("esb-q", 1, False, "bench.in", "expense.approved")).marshal(),
        pika.frame.Header(1, len(body), props).marshal(), pika.frame.Body(1, body).marshal()))
    confirm = pika.frame.Method(2, pika.spec.Basic.Ack(1)).marshal()
    out = pika.BasicProperties(delivery_mode=2, content_type=XML, headers={}, message_id="bx-1")

    def run(_item) -> None:
        data = incoming
        while data:
            used, _frame = pika.frame.decode_frame(data)
            data = data[used:]
        pika.frame.decode_frame(confirm)
        pika.frame.Method(2, pika.spec.Basic.Publish(exchange="bench.out", routing_key="voucher",
                                                     mandatory=True)).marshal()
        pika.frame.Header(2, len(xml), out).marshal()
        pika.frame.Body(2, xml).marshal()
        pika.frame.Method(1, pika.spec.Basic.Ack(1, False)).marshal()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000, help="messages per pass")
    parser.add_argument("--rounds", type=int, default=5, help="passes; the best counts")
    args = parser.parse_args()
    configure_logging("warning")  # as the bench's `esb run --log-level warning`
    root, name, _topology, _sink = relay_project(common.DEFAULT_URL)
    try:
        project = load_project(root, {})
        route = project.routes[name]
        step = route.steps[0]
        broker = _broker()
        runner = RouteRunner(route, broker, lambda _name: None, None, "parts", seal=load_key(root, None),
                             hooks=Hooks([LogMiddleware(), MetricsMiddleware()]))
        bodies = [common.expense_body(i) for i in range(args.n)]
        values = [decode_body(b, JSON)[0] for b in bodies]
        xmls = [json_to_xml({step.root: v}, root=step.root) for v in values]
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)  # as the worker does (supervisor._tune_gc)
        parts = {
            "decode": _timed(lambda b: decode_body(b, JSON), bodies, args.rounds),
            "transform": _timed(lambda v: json_to_xml({step.root: v}, root=step.root), values, args.rounds),
            "encode": _timed(lambda x: encode_body(x, XML), xmls, args.rounds),
        }
        whole = _timed(whole_message(runner, broker, broker._publisher),  # noqa: SLF001
                       [(b, f"bx-{i}") for i, b in enumerate(bodies)], args.rounds)
        parts["esb bookkeeping"] = whole - sum(parts.values())
        if runner._inflight or broker._pending:  # noqa: SLF001 - every message must have been acked
            raise SystemExit(f"not every message was settled: {runner._inflight} in flight")  # noqa: SLF001
        parts["pika frames"] = _timed(pika_frames(bodies[0], xmls[0].encode()), range(args.n), args.rounds)
    finally:
        common.remove_projects()
    total = sum(parts.values())
    print(f"{args.n} messages ({len(bodies[0])} B JSON → {len(xmls[0].encode())} B XML), best of {args.rounds}")
    print(f"{'part':<16} {'µs/msg':>8} {'share':>6}")
    for part, us in parts.items():
        print(f"{part:<16} {us:8.1f} {us / total:6.0%}")
    print(f"{'total':<16} {total:8.1f}   ({1e6 / total:,.0f} msg/s on one core)")


if __name__ == "__main__":
    main()
