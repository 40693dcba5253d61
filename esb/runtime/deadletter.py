"""The dead letter: the original message, why it died, and (sealed) what a replay needs."""

from __future__ import annotations

from esb.errors import ProcessingError
from esb.message import Message
from esb.runtime import names
from esb.runtime.attempt import Attempt
from esb.runtime.broker import Outgoing
from esb.runtime.envelope import encode_body, wire_headers
from esb.runtime.middleware import short
from esb.runtime.retry import now_iso
from esb.runtime.state import Seal
from esb.transform import jsoncodec


def letter(attempt: Attempt, error: ProcessingError, step: str | None, index: int, message: Message | None,
           compensation: str, generations: dict, seal: Seal) -> Outgoing:
    body, content_type, headers = attempt.original
    why = {
        names.DLQ_ROUTE: attempt.route, names.DLQ_STEP: step or "", names.DLQ_ERROR_CLASS: error.error_class,
        names.DLQ_EXCEPTION: type(error).__name__, names.DLQ_REASON: short(str(error)),
        names.DLQ_ATTEMPTS: attempt.state.attempt, names.FIRST_FAILURE: attempt.state.first_failure or now_iso(),
        names.DLQ_LAST_FAILURE: now_iso(), names.DLQ_COMPENSATION: compensation, names.RESUME_STEP: index,
        names.GENERATIONS: jsoncodec.dumps(generations),
    }
    if message is not None:
        why[names.DLQ_STATE_BODY] = encode_body(message.body, message.content_type)
        why[names.DLQ_STATE_CONTENT_TYPE] = message.content_type
    wired = wire_headers({**headers, **why})
    return Outgoing(body, content_type or "application/octet-stream",
                    seal.sealed(attempt.route, attempt.message_id, body, wired), attempt.message_id)

