"""The message envelope that travels through a route."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from esb.transform import jsoncodec

JSON = "application/json"
XML = "application/xml"
TEXT = "text/plain"
BINARY = "application/octet-stream"

HEADER_PREFIX = "x-esb-"  # headers starting with it are esb's own (retry and dead-letter state, file facts)


def _frozen_headers(headers: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(headers or {}))


@dataclasses.dataclass(frozen=True)
class Message:
    """One message: a body plus headers. Steps return new messages; none mutates its input.

    `body` is the parsed JSON value (dicts, lists, str, int, Decimal, bool, None) when
    `content_type` is JSON, the document text when it is XML, and bytes otherwise.
    """

    body: Any
    content_type: str = JSON
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    message_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    # The JSON text the body was read from, while the body is that reading (a new body drops it):
    # writing the body gives the same value, so it is sent on as it came (jsoncodec.loads_keeping_text).
    json_text: bytes | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "headers", _frozen_headers(self.headers))

    def with_body(self, body: Any, content_type: str | None = None, json_text: bytes | None = None) -> Message:
        # not dataclasses.replace: every step calls this, and replace looks the fields up each time
        return Message(body, content_type or self.content_type, self.headers, self.message_id, json_text)

    def json_bytes(self) -> bytes:
        """The body written as JSON: the text it was read from while unchanged, else jsoncodec's
        writing of it (TransformError for a value JSON cannot hold)."""
        if self.json_text is not None:
            return self.json_text
        return jsoncodec.dumps(self.body).encode("utf-8")

    def with_headers(self, **changes: Any) -> Message:
        return dataclasses.replace(self, headers={**self.headers, **changes})

    @property
    def is_json(self) -> bool:
        return self.content_type == JSON

    @property
    def is_xml(self) -> bool:
        return self.content_type == XML
