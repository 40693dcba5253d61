"""A webhook request as the message it becomes: which headers it keeps, its id, its content type."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from esb.message import HEADER_PREFIX
from esb.routes.model import HttpSource
from esb.runtime.broker import Outgoing
from esb.runtime.envelope import FORMATS

STANDARD_HEADERS = ("X-Request-Id",)  # kept on every route's messages: it ties a message to the sender's log
# A message id is printed, logged and used as the idempotency key: printable ASCII, bounded.
MESSAGE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,200}$")


class BadRequest(Exception):
    """The request cannot become a message; the text says why."""


def request_headers(environ: Mapping[str, object]) -> dict[str, str]:
    """A WSGI request's headers by lower-case name."""
    found = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        found["content-type"] = environ["CONTENT_TYPE"]
    return found


def to_outgoing(source: HttpSource, headers: Mapping[str, str], body: bytes, default_format: str) -> Outgoing:
    """The message a request becomes. Only the idempotency header, X-Request-Id and the route's
    `headers` are kept (every header is the sender's input; esb's own x-esb-* never are)."""
    kept = {name: headers[name.lower()] for name in (source.idempotency_header, *STANDARD_HEADERS, *source.headers)
            if name.lower() in headers and not name.lower().startswith(HEADER_PREFIX)}
    given = headers.get(source.idempotency_header.lower())
    if given is not None and not MESSAGE_ID.match(given):
        raise BadRequest(f"the {source.idempotency_header} header must be 1 to 200 letters, digits or ._:@/+=-")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower() or FORMATS[default_format]
    return Outgoing(body, content_type, kept, given or uuid.uuid4().hex)
