"""The W3C trace context of the message this thread is running, for what the message sends out.

The tracing middleware (esb.observability.tracing) binds it when a message is taken up, on the
thread that then runs the message's steps, and for the length of each adapter call; a publish
(esb.runtime.envelope) and a REST call (esb.adapters.rest) send its `traceparent`/`tracestate`.
Nothing here imports OpenTelemetry: with tracing off nothing is ever bound and a read is one
ContextVar lookup.

A binding names its message: a thread that later does work for another message (a lane settling
an inline message, say) does not lend it a stale context.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any, NamedTuple

HEADERS = ("traceparent", "tracestate")


class Bound(NamedTuple):
    message_id: str
    headers: Mapping[str, str]  # traceparent (and tracestate) of the span that sends
    context: Any                # that span's OpenTelemetry context: the parent of spans made meanwhile


_bound: contextvars.ContextVar[Bound | None] = contextvars.ContextVar("esb_trace", default=None)


def bind(message_id: str, headers: Mapping[str, str], context: Any = None) -> contextvars.Token:
    return _bound.set(Bound(message_id, headers, context))


def unbind(token: contextvars.Token) -> None:
    _bound.reset(token)


def bound(message_id: str) -> Bound | None:
    """What is bound on this thread for `message_id`, or None (tracing off, or another message)."""
    current = _bound.get()
    return current if current is not None and current.message_id == message_id else None


def outgoing(message_id: str, headers: dict) -> dict:
    """`headers` of an outgoing message, the trace headers replaced by those bound for it."""
    current = bound(message_id)
    if current is None:
        return headers
    return {**{k: v for k, v in headers.items() if k not in HEADERS}, **current.headers}
