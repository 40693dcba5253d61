"""OpenTelemetry tracing of messages: a span per message, per step and per adapter call, with the
W3C trace context carried in and out, so one trace crosses source system -> esb -> ledger.

    process <route>         CONSUMER  from taking the delivery up to settling it; its parent is the
                                      `traceparent` AMQP header the source sent (none: a new trace)
      <step label>                    one per completed step, timed from the end of the step before
                                      (as the metrics time steps); a failed step's span has status ERROR
      <adapter> <operation> CLIENT    one per adapter call; a REST call sends its `traceparent`

What the message publishes (and the retry copy it waits in) carries the message span's
`traceparent`/`tracestate`, so the consumer downstream continues the trace. The context reaches
publishes and REST calls through esb.tracecontext, bound on the thread that runs the steps.

Optional: `pip install 'esb[tracing]'` brings opentelemetry-sdk and the OTLP/HTTP exporter, and
`tracing.exporter` in config/esb.yaml turns it on. With tracing off this module is never imported.
Sampling follows the SDK's OTEL_TRACES_SAMPLER variables (default: parent-based, always on).
"""

from __future__ import annotations

import time

from esb import tracecontext
from esb.errors import ConfigError
from esb.runtime.middleware import Middleware, short

try:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:
    raise ConfigError("tracing.exporter is set in config/esb.yaml (or ESB_TRACING_EXPORTER), but OpenTelemetry "
                      "is not installed", hint="pip install 'esb[tracing]', or set the exporter to none") from None

PROPAGATOR = TraceContextTextMapPropagator()
FAILED_OUTCOMES = ("dead_lettered", "given_back")


def provider_for(settings) -> TracerProvider:
    """The tracer provider `tracing:` in the settings asks for; spans are exported off the message
    path, in batches (flushed when the process exits)."""
    provider = TracerProvider(resource=Resource.create({"service.name": settings.tracing_service_name}))
    if settings.tracing_exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif settings.tracing_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.tracing_endpoint or None)))
    return provider


class _Trace:
    """A message's tracing: its span, that span's context and W3C headers, when the last step ended."""

    __slots__ = ("span", "context", "headers", "step_started")

    def __init__(self, span, context, headers: dict, started: int):
        self.span, self.context, self.headers, self.step_started = span, context, headers, started


class TracingMiddleware(Middleware):
    """Spans on the runtime's seam; `TracingMiddleware.from_settings(settings)` for `esb run`."""

    def __init__(self, provider):
        self.provider = provider
        self.tracer = provider.get_tracer("esb")

    @classmethod
    def from_settings(cls, settings) -> TracingMiddleware:
        return cls(provider_for(settings))

    def before_message(self, attempt):
        parent = PROPAGATOR.extract(_trace_headers(attempt.delivery.headers))
        span = self.tracer.start_span(f"process {attempt.route}", context=parent, kind=SpanKind.CONSUMER, attributes={
            "messaging.system": "rabbitmq", "messaging.operation.type": "process",
            "messaging.destination.name": attempt.delivery.queue, "messaging.message.id": attempt.message_id,
            "esb.route": attempt.route})
        context = trace.set_span_in_context(span)
        headers: dict = {}
        PROPAGATOR.inject(headers, context=context)
        attempt.trace = _Trace(span, context, headers, time.time_ns())
        # This thread runs the steps next: their publishes and REST calls send this span's context.
        tracecontext.bind(attempt.message_id, headers, context)

    def after_step(self, attempt, step, message):
        self._step_span(attempt, step.label, step.kind)

    def on_step_failed(self, attempt, error):
        span = self._step_span(attempt, error.step or "", None, end=False)
        if span is not None:
            span.set_attribute("error.type", error.error_class)
            span.set_status(Status(StatusCode.ERROR, short(str(error))))
            span.end(end_time=attempt.trace.step_started)

    def on_forged_state(self, attempt, headers):
        self._event(attempt, "forged_state_dropped", {"esb.headers": sorted(headers)})

    def on_resumed(self, attempt, step_index):
        self._event(attempt, "resumed_after_crash", {"esb.step_index": step_index})

    def on_compensated(self, attempt, step, error):
        self._event(attempt, "compensated" if error is None else "compensation_failed", {"esb.step": step})

    def on_skip(self, attempt, reason):
        self._event(attempt, "duplicate_skipped", {"esb.reason": reason})

    def on_retry(self, attempt, reason, delay_ms, next_attempt, resume_step):
        self._event(attempt, "retry_scheduled", {"esb.reason": reason, "esb.delay_ms": delay_ms,
                                                 "esb.next_attempt": next_attempt, "esb.resume_step": resume_step})

    def on_dead_letter(self, attempt, step, error_class, compensation, reason):
        self._event(attempt, "dead_lettered", {"esb.step": step, "error.type": error_class,
                                               "esb.compensation": compensation})
        if attempt.trace is not None:
            attempt.trace.span.set_status(Status(StatusCode.ERROR, reason))

    def on_give_back(self, attempt, error, pause):
        self._event(attempt, "given_back", {"error.type": type(error).__name__, "esb.requeue_in_s": pause})

    def after_message(self, attempt, outcome):
        t = attempt.trace
        if t is None:
            return
        t.span.set_attributes({"esb.outcome": outcome, "esb.attempt": attempt.state.attempt})
        if outcome == "given_back":
            t.span.set_status(Status(StatusCode.ERROR, "esb could not settle the delivery: requeued"))
        t.span.end()

    def wrap_adapter(self, name, kind, adapter):
        return TracedAdapter(self.tracer, name, kind, adapter)

    def _step_span(self, attempt, label: str, kind: str | None, end: bool = True):
        t = attempt.trace
        if t is None:
            return None
        now = time.time_ns()
        span = self.tracer.start_span(label, context=t.context, start_time=t.step_started,
                                      attributes={"esb.route": attempt.route, "esb.step": label,
                                                  **({"esb.step.kind": kind} if kind else {})})
        t.step_started = now
        if end:
            span.end(end_time=now)
        return span

    @staticmethod
    def _event(attempt, name: str, attributes: dict) -> None:
        if attempt.trace is not None:
            attempt.trace.span.add_event(name, attributes)


class TracedAdapter:
    """An adapter whose calls are CLIENT spans under the message's span; while one runs, its
    context is the one bound, so the REST adapter sends the call's own `traceparent`."""

    def __init__(self, tracer, name: str, kind: str, adapter):
        self.tracer, self.name, self.kind, self.adapter = tracer, name, kind, adapter

    def call(self, operation, message, *, idempotency_key):
        bound = tracecontext.bound(message.message_id)
        if bound is None:  # not on the thread that runs this message's steps: no parent to hang it on
            return self.adapter.call(operation, message, idempotency_key=idempotency_key)
        span = self.tracer.start_span(f"{self.name} {operation}", context=bound.context, kind=SpanKind.CLIENT,
                                      attributes={"esb.adapter": self.name, "esb.adapter.kind": self.kind,
                                                  "esb.operation": operation})
        context = trace.set_span_in_context(span)
        headers: dict = {}
        PROPAGATOR.inject(headers, context=context)
        token = tracecontext.bind(message.message_id, headers, context)
        try:
            return self.adapter.call(operation, message, idempotency_key=idempotency_key)
        except Exception as exc:
            span.set_attribute("error.type", getattr(exc, "error_class", None) or type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, short(str(exc))))
            raise
        finally:
            tracecontext.unbind(token)
            span.end()

    def close(self) -> None:
        self.adapter.close()

    def __getattr__(self, name):  # anything else an adapter offers (e.g. the SFTP poller's reads)
        return getattr(self.adapter, name)


def _trace_headers(headers) -> dict:
    """The W3C headers of a delivery as text (an AMQP table may hold bytes)."""
    found = {}
    for name in tracecontext.HEADERS:
        value = (headers or {}).get(name)
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("ascii", "replace")
        if isinstance(value, str):
            found[name] = value
    return found
