"""Tracing: one trace crosses source system -> esb -> ledger. A message's span continues the
`traceparent` its source sent, each step has a span, and the REST call and the published output
carry the trace on. Run in-process on the embedded broker, spans caught by the SDK's in-memory
exporter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from esb import tracecontext
from esb.errors import ConfigError
from esb.loading.config import load_settings
from esb.loading.project import load_project
from esb.observability.tracing import TracingMiddleware
from esb.runtime.broker import Binding, Outgoing, QueueSpec, Topology
from esb.runtime.connect import make_broker
from esb.runtime.middleware import LogMiddleware
from esb.runtime.runtime import Runtime

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SOURCE_SPAN = "b7ad6b7169203331"
SOURCE = {"traceparent": f"00-{TRACE_ID}-{SOURCE_SPAN}-01", "tracestate": "oa=approvals"}

LEDGER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 2s
operations:
  create_voucher: {{method: POST, path: /vouchers}}
"""
CALLING = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
retry: {{attempts: 1, in_process: 0}}
steps:
  - label: post-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt}}
  - label: tell-erp
    publish: {{exchange: out-{uid}, routing_key: done}}
"""
PURE = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
steps:
  - label: to-xml
    json_to_xml: {{root: Voucher}}
  - label: tell-erp
    publish: {{exchange: out-{uid}, routing_key: done}}
"""


class Traced:
    """A Runtime on the embedded broker with tracing to memory, and a queue listening to its output."""

    def __init__(self, root: Path, files: dict[str, str], uid: str):
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(textwrap.dedent(text))
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.uid = uid
        self.runtime = Runtime(load_project(root, {}), make_broker("memory://"),
                               middleware=[LogMiddleware(), TracingMiddleware(provider)])
        self.runtime.start()
        self.broker = self.runtime.broker
        self.received: list = []
        self.arrived = threading.Event()
        queue, exchange = f"seen-{uid}", f"out-{uid}"
        self.broker.declare(Topology(((exchange, "topic"),), (QueueSpec(queue),), (Binding(queue, exchange, "#"),)))
        self.broker.consume(queue, 10, self._collect)

    def _collect(self, delivery) -> None:
        self.received.append(delivery)
        self.broker.ack(delivery)
        self.arrived.set()

    def send(self, body: bytes, headers: dict) -> str:
        message_id = uuid.uuid4().hex
        self.broker.publish(f"in-{self.uid}", "x", Outgoing(body, "application/json", headers, message_id)).result(10)
        return message_id

    def spans(self, message_span: str):
        """Every finished span, once the message's own span (which ends last) has ended."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            spans = self.exporter.get_finished_spans()
            if any(s.name == message_span for s in spans):
                return {s.name: s for s in spans}
            time.sleep(0.02)
        raise AssertionError(f"no span {message_span}: {[s.name for s in self.exporter.get_finished_spans()]}")

    def stop(self) -> None:
        self.runtime.stop(drain_timeout=5)


@pytest.fixture
def traced(tmp_path):
    started = []

    def start(files: dict[str, str], uid: str) -> Traced:
        started.append(Traced(tmp_path, files, uid))
        return started[-1]
    yield start
    for t in started:
        t.stop()


def parts(traceparent: str) -> tuple[int, int]:
    """(trace id, parent span id) of a W3C traceparent."""
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16)


def test_one_trace_runs_from_the_source_through_each_step_to_the_ledger_and_the_output(traced, http_stub):
    http_stub.enqueue("/vouchers", 201, {"voucher_no": "V-1"})
    uid = uuid.uuid4().hex[:8]
    t = traced({"adapters/ledger.yaml": LEDGER.format(url=http_stub.url), "routes/r.yaml": CALLING.format(uid=uid)},
               uid)
    t.send(b'{"claim_id": "C-1", "amount": "12.30"}', SOURCE)
    assert t.arrived.wait(10), "nothing was published"
    spans = t.spans(f"process r-{uid}")

    message = spans[f"process r-{uid}"]
    assert message.kind == SpanKind.CONSUMER
    assert message.context.trace_id == int(TRACE_ID, 16)
    assert message.parent.span_id == int(SOURCE_SPAN, 16)  # the source's span is its parent
    assert message.attributes["esb.outcome"] == "acked"
    steps = [spans["post-voucher"], spans["tell-erp"]]
    assert all(s.parent.span_id == message.context.span_id for s in steps)
    assert steps[0].end_time <= steps[1].start_time
    call = spans["ledger create_voucher"]
    assert call.kind == SpanKind.CLIENT and call.parent.span_id == message.context.span_id

    # the ledger's request continues the trace under the call's span
    sent = http_stub.requests_to("/vouchers")[0].headers
    assert parts(sent["traceparent"]) == (int(TRACE_ID, 16), call.context.span_id)
    assert sent["tracestate"] == "oa=approvals"
    # the consumer of the output continues it under the message's span
    output = t.received[0].headers
    assert parts(output["traceparent"]) == (int(TRACE_ID, 16), message.context.span_id)
    assert output["tracestate"] == "oa=approvals"


def test_a_failed_step_has_an_error_span_and_the_dead_lettered_message_too(traced, http_stub):
    http_stub.enqueue("/vouchers", 422, {"error": "unknown cost centre"})
    uid = uuid.uuid4().hex[:8]
    t = traced({"adapters/ledger.yaml": LEDGER.format(url=http_stub.url), "routes/r.yaml": CALLING.format(uid=uid)},
               uid)
    t.send(b'{"claim_id": "C-2"}', SOURCE)
    spans = t.spans(f"process r-{uid}")

    failed = spans["post-voucher"]
    assert failed.status.status_code == StatusCode.ERROR
    assert "HTTP 422" in failed.status.description
    assert failed.attributes["error.type"] == "permanent"
    assert spans["ledger create_voucher"].status.status_code == StatusCode.ERROR
    message = spans[f"process r-{uid}"]
    assert message.status.status_code == StatusCode.ERROR
    assert message.attributes["esb.outcome"] == "dead_lettered"
    assert [e.name for e in message.events] == ["dead_lettered"]
    assert "tell-erp" not in spans


def test_a_route_run_on_the_brokers_thread_traces_its_output_too(traced):
    uid = uuid.uuid4().hex[:8]
    t = traced({"routes/r.yaml": PURE.format(uid=uid)}, uid)
    t.send(b'{"no": 1}', {"traceparent": SOURCE["traceparent"]})
    assert t.arrived.wait(10), "nothing was published"
    spans = t.spans(f"process r-{uid}")
    message = spans[f"process r-{uid}"]
    assert [spans["to-xml"].parent.span_id, spans["tell-erp"].parent.span_id] == [message.context.span_id] * 2
    assert parts(t.received[0].headers["traceparent"]) == (int(TRACE_ID, 16), message.context.span_id)


def test_a_message_without_traceparent_starts_a_trace_that_its_output_carries(traced):
    uid = uuid.uuid4().hex[:8]
    t = traced({"routes/r.yaml": PURE.format(uid=uid)}, uid)
    t.send(b'{"no": 1}', {})
    assert t.arrived.wait(10), "nothing was published"
    message = t.spans(f"process r-{uid}")[f"process r-{uid}"]
    assert message.parent is None
    assert parts(t.received[0].headers["traceparent"]) == (message.context.trace_id, message.context.span_id)


def test_only_the_message_bound_gets_the_trace_headers_a_stale_binding_is_ignored():
    mine = {"traceparent": f"00-{TRACE_ID}-{'1' * 16}-01"}
    token = tracecontext.bind("m-1", mine)
    try:
        incoming = {"traceparent": SOURCE["traceparent"], "tracestate": "oa=approvals", "source": "oa"}
        assert tracecontext.outgoing("m-1", incoming) == {"source": "oa", **mine}
        assert tracecontext.outgoing("m-2", incoming) is incoming
    finally:
        tracecontext.unbind(token)
    assert tracecontext.bound("m-1") is None


def test_tracing_is_configured_in_esb_yaml_and_from_the_environment(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config/esb.yaml").write_text("tracing: {exporter: otlp, endpoint: 'http://collector:4318/v1/traces'}\n")
    settings = load_settings(tmp_path, {"ESB_TRACING_SERVICE_NAME": "esb-finance"})
    assert (settings.tracing_exporter, settings.tracing_endpoint, settings.tracing_service_name) == \
        ("otlp", "http://collector:4318/v1/traces", "esb-finance")
    assert load_settings(tmp_path / "nothing", {}).tracing_exporter == "none"


def test_without_opentelemetry_asking_for_tracing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "esb.observability.tracing")
    with pytest.raises(ConfigError, match=r"OpenTelemetry is not installed — pip install 'esb\[tracing\]'"):
        import esb.observability.tracing  # noqa: F401


def test_with_tracing_off_opentelemetry_is_never_imported():
    code = ("import sys, esb.runtime.supervisor, esb.runtime.runtime, esb.adapters.rest, esb.cli.main; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
