"""Between the wire and the pipeline: bytes and AMQP headers <-> Message."""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from esb import tracecontext
from esb.errors import TransformError
from esb.message import BINARY, JSON, TEXT, XML, Message
from esb.runtime import names
from esb.runtime.broker import Delivery, Outgoing
from esb.transform import jsoncodec
from esb.transform.numbers import plain

FORMATS = {"json": JSON, "xml": XML, "text": TEXT, "binary": BINARY}
_XML_TYPES = ("application/xml", "text/xml")


def content_type_of(delivery: Delivery, default_format: str) -> str:
    kind = (delivery.content_type or "").split(";")[0].strip().lower()
    if kind in _XML_TYPES or kind.endswith("+xml"):
        return XML
    if kind == JSON or kind.endswith("+json"):
        return JSON
    if kind.startswith("text/"):
        return TEXT
    if kind:
        return BINARY
    return FORMATS[default_format]


def decode_body(raw: bytes, content_type: str) -> tuple[Any, bytes | None]:
    """Bytes off the wire to the body a step sees, and for JSON the text to send that body on as
    while it is unchanged (Message.json_text); a malformed JSON body raises TransformError."""
    if content_type == JSON:
        return jsoncodec.loads_keeping_text(raw)
    if content_type in (XML, TEXT):
        try:
            return raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            raise TransformError(f"the body is not UTF-8 text (byte {exc.start})") from None
    return raw, None


def encode_body(body: Any, content_type: str) -> bytes:
    if content_type == JSON:
        return jsoncodec.dumps(body).encode("utf-8")
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    raise TransformError(f"a {content_type} body must be text or bytes, not {type(body).__name__}")


def body_bytes(message: Message) -> bytes:
    """The message's body on the wire: a JSON body as the text it was read from while it is unchanged."""
    return message.json_bytes() if message.is_json else encode_body(message.body, message.content_type)


def stored_body(message: Message) -> dict:
    """The body as JSON text for the store and compensation records: a binary body (not UTF-8
    text) in base64, so that it comes back byte for byte."""
    raw = body_bytes(message)
    if message.content_type == BINARY:
        return {"body": base64.b64encode(raw).decode("ascii"), "encoding": "base64",
                "content_type": message.content_type}
    return {"body": raw.decode("utf-8"), "content_type": message.content_type}


def body_of(stored: Mapping[str, Any]) -> Any:
    """The body a `stored_body` dict holds."""
    text = stored["body"]
    raw = base64.b64decode(text) if stored.get("encoding") == "base64" else text.encode("utf-8")
    return decode_body(raw, stored["content_type"])[0]


# Headers RabbitMQ adds itself when it dead-letters (our retry tiers) or counts deliveries.
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


def user_headers(headers: Mapping[str, Any]) -> dict:
    """The message's own headers: without esb's state headers and without the broker's."""
    return {k: _plain(v) for k, v in headers.items()
            if k not in names.INTERNAL_HEADERS and not str(k).startswith(_BROKER_HEADERS)}


def _plain(value: Any) -> Any:
    """AMQP tables may hold timestamps and bytes; a message's headers hold JSON-able values."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def wire_headers(headers: Mapping[str, Any]) -> dict:
    """AMQP tables carry no Decimal we want to trust: send exact text (fixed point) instead."""
    return {k: (plain(v, f"the header {k}") if isinstance(v, Decimal) else v) for k, v in headers.items()}


def to_message(delivery: Delivery, default_format: str) -> Message:
    content_type = content_type_of(delivery, default_format)
    body, text = decode_body(delivery.body, content_type)
    return Message(body, content_type, user_headers(delivery.headers or {}), message_id_of(delivery), text)


def to_outgoing(message: Message, extra_headers: Mapping[str, Any] | None = None) -> Outgoing:
    own = tracecontext.outgoing(message.message_id, user_headers(message.headers))  # traced: the span's traceparent
    headers = wire_headers({**own, **(extra_headers or {})})
    return Outgoing(body_bytes(message), message.content_type, headers, message.message_id)


def message_id_of(delivery: Delivery) -> str:
    """The delivery's message id; one without gets an id derived from its content, stable across
    redeliveries."""
    if delivery.message_id:
        return delivery.message_id
    import hashlib
    return "sha256-" + hashlib.sha256(delivery.body).hexdigest()[:32]

