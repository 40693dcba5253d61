"""`esb run` on RabbitMQ with `tracing.exporter: otlp`: the spans of a message reach an OTLP/HTTP
collector (a stub on loopback), in one trace with the source's span, the ledger's request and the
published output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

from integration_helpers import Bus, delete_queues, wait_until, write_project
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from esb.testing.http import StubHttpServer, StubResponse

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SOURCE_SPAN = "00f067aa0ba902b7"

CONFIG = """\
tracing:
  exporter: otlp
  endpoint: {collector}/v1/traces
  service_name: esb-under-test
"""
LEDGER = """\
name: ledger
kind: rest
base_url: {url}
operations:
  create_voucher: {{method: POST, path: /vouchers}}
"""
ROUTE = """\
name: traced-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
steps:
  - label: post-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt}}
  - label: tell-erp
    publish: {{exchange: out-{uid}, routing_key: done}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def exported_spans(collector: StubHttpServer) -> dict:
    """{span name: (trace id, span id, parent span id, service name)} of every span the collector got."""
    found = {}
    for request in collector.requests_to("/v1/traces"):
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            for span in (s for scope in resource_spans.scope_spans for s in scope.spans):
                found[span.name] = (span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), service)
    return found


def test_esb_run_exports_one_trace_from_the_source_through_the_ledger_to_the_output(tmp_path, uid, rabbit_url,
                                                                                    http_stub):
    http_stub.set_default(StubResponse(201, {"voucher_no": "V-1"}))
    with StubHttpServer() as collector:
        collector.set_default(StubResponse(200, b"", {"Content-Type": "application/x-protobuf"}))
        root = write_project(tmp_path / "p", {"config/esb.yaml": CONFIG.format(collector=collector.url),
                                              "adapters/ledger.yaml": LEDGER.format(url=http_stub.url),
                                              "routes/r.yaml": ROUTE.format(uid=uid)})
        port = free_port()
        env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "100"}  # export every 0.1 s, not every 5 s
        bus = Bus(rabbit_url)
        with open(tmp_path / "esb.log", "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "esb.cli.main", "--root", str(root), "run",
                                        "--workers", "1", "--broker", rabbit_url,
                                        "--metrics-listen", f"127.0.0.1:{port}"],
                                       stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                wait_until(lambda: ready(f"http://127.0.0.1:{port}"), 30, "esb run never became ready")
                bus.listen(f"seen-{uid}", f"out-{uid}")
                bus.send(f"in-{uid}", "x", json.dumps({"claim_id": "C-1"}).encode(),
                         headers={"traceparent": f"00-{TRACE_ID}-{SOURCE_SPAN}-01"})
                output = bus.wait_for(f"seen-{uid}", 1)[0]
                route = f"process traced-{uid}"
                spans = wait_until(lambda: (s := exported_spans(collector)).get(route) and s, 20,
                                 f"the collector never got the message's span: {exported_spans(collector)}")
            finally:
                bus.close()
                process.terminate()
                process.wait(40)
                delete_queues(rabbit_url, uid)

    trace_id, message_span, parent, service = spans[route]
    assert (trace_id, parent, service) == (TRACE_ID, SOURCE_SPAN, "esb-under-test")
    for name in ("post-voucher", "tell-erp", "ledger create_voucher"):
        assert spans[name][0] == TRACE_ID and spans[name][2] == message_span, name
    call_span = spans["ledger create_voucher"][1]
    assert http_stub.requests_to("/vouchers")[0].headers["traceparent"] == f"00-{TRACE_ID}-{call_span}-01"
    assert output.headers["traceparent"] == f"00-{TRACE_ID}-{message_span}-01"
