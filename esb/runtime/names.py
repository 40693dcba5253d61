"""Every broker name esb uses: queues, retry tiers, dead-letter queues, headers."""

from __future__ import annotations

from esb.message import HEADER_PREFIX


def route_queue(route: str) -> str:
    """A route consumes its own queue, named after the route unless the route says otherwise."""
    return route


def dead_letter_queue(route: str) -> str:
    return f"{route}.dlq"


def retry_queue(route: str, delay_ms: int) -> str:
    """One delay tier: messages wait here for `delay_ms`, then dead-letter back to the route queue."""
    return f"{route}.retry.{delay_ms}ms"


def partition_queue(route: str, index: int) -> str:
    """One partition of an ordered route: the messages of the keys that hash to `index`, in order."""
    return f"{route}.p{index}"


# Headers esb sets on the wire. The first group travels with a message between delivery
# attempts (the retry state); the second is added to a dead letter to say why it died.
ATTEMPT = HEADER_PREFIX + "attempt"              # deliveries so far, 1-based
RESUME_STEP = HEADER_PREFIX + "resume-step"      # index of the step to resume at
COMPENSATIONS = HEADER_PREFIX + "compensations"  # JSON list of completed side effects to undo
FIRST_FAILURE = HEADER_PREFIX + "first-failure"  # ISO time of the first failure
IDEMPOTENCY_KEY = HEADER_PREFIX + "idempotency-key"  # read from the original body: the state body may lack it
GENERATIONS = HEADER_PREFIX + "generations"      # JSON {step label: n}: effects undone n-1 times, replayed anew
BUSY = HEADER_PREFIX + "busy"                    # times this copy found its key held by another worker
SEAL = HEADER_PREFIX + "seal"                    # HMAC over the route, id, body and every x-esb-* header

DLQ_ROUTE = HEADER_PREFIX + "route"
DLQ_STEP = HEADER_PREFIX + "failed-step"
DLQ_ERROR_CLASS = HEADER_PREFIX + "error-class"
DLQ_EXCEPTION = HEADER_PREFIX + "exception"
DLQ_REASON = HEADER_PREFIX + "reason"
DLQ_LAST_FAILURE = HEADER_PREFIX + "last-failure"
DLQ_COMPENSATION = HEADER_PREFIX + "compensation"   # ok, failed: <why>, or none
DLQ_DEAD_AT = HEADER_PREFIX + "dead-lettered-at"

ORIGINAL_BODY = HEADER_PREFIX + "original-body"           # bytes: the body as the source sent it
ORIGINAL_CONTENT_TYPE = HEADER_PREFIX + "original-content-type"
ORIGINAL_HEADERS = HEADER_PREFIX + "original-headers"     # JSON object of the source's headers
DLQ_ATTEMPTS = HEADER_PREFIX + "attempts"
DLQ_STATE_BODY = HEADER_PREFIX + "failed-body"            # bytes: the body as it stood at the failed step
DLQ_STATE_CONTENT_TYPE = HEADER_PREFIX + "failed-content-type"

# esb's own bookkeeping, never shown to steps as message headers (file headers from the SFTP
# poller, x-esb-file-*, are the message's and stay).
INTERNAL_HEADERS = frozenset({
    ATTEMPT, RESUME_STEP, COMPENSATIONS, FIRST_FAILURE, IDEMPOTENCY_KEY, GENERATIONS, BUSY, SEAL,
    ORIGINAL_BODY, ORIGINAL_CONTENT_TYPE,
    ORIGINAL_HEADERS, DLQ_ROUTE, DLQ_STEP, DLQ_ERROR_CLASS, DLQ_EXCEPTION, DLQ_REASON, DLQ_LAST_FAILURE,
    DLQ_COMPENSATION, DLQ_DEAD_AT, DLQ_ATTEMPTS, DLQ_STATE_BODY, DLQ_STATE_CONTENT_TYPE})
