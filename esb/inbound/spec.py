"""The `source.http` setting of a route: its JSON Schema and the model built from it."""

from __future__ import annotations

from collections.abc import Mapping

from esb.adapters.kinds import DURATION
from esb.loading.durations import seconds
from esb.routes.model import HttpAuth, HttpSource

_HEADER = {"type": "string", "pattern": r"^(?![Xx]-[Ee][Ss][Bb]-)[A-Za-z0-9-]{1,100}$",
           "description": "an HTTP header name; never x-esb-* (esb's own, sealed headers)"}
_SECRET_ENV = {"type": "string", "pattern": "^[A-Z_][A-Z0-9_]*$", "examples": ["OA_WEBHOOK_SECRET"],
               "description": "the environment variable holding the secret (the route file names it, never holds it)"}


def _auth(description: str, extra: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["secret_env"], "description": description,
            "properties": {"secret_env": _SECRET_ENV, **extra}}


HTTP_SOURCE = {
    "type": "object", "additionalProperties": False, "required": ["path", "auth"],
    "description": "a webhook: `esb run` serves `path` (config http.listen); a request becomes a message on the "
                   "route's queue, answered 202 once the broker confirmed it",
    "properties": {
        "path": {"type": "string", "pattern": r"^/[A-Za-z0-9._~/-]*$", "examples": ["/hooks/oa/expense"]},
        "auth": {
            "type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
            "description": "how the sender proves itself: exactly one of hmac, api_key, bearer",
            "properties": {
                "hmac": _auth("hex HMAC-SHA256 of `TIMESTAMP.BODY` in `header` (optionally `sha256=`-prefixed), "
                              "the Unix time in `timestamp_header`; a request outside `window` or seen before "
                              "is refused", {"header": _HEADER, "timestamp_header": _HEADER, "window": DURATION}),
                "api_key": _auth("the key in `header` (default X-Api-Key)", {"header": _HEADER}),
                "bearer": _auth("Authorization: Bearer TOKEN", {}),
            },
        },
        "idempotency_header": {**_HEADER, "description": "the header whose value becomes the message id, so a "
                                                         "re-sent webhook is one message (default Idempotency-Key)"},
        "headers": {"type": "array", "items": _HEADER, "maxItems": 32,
                    "description": "request headers copied onto the message (every other header is dropped)"},
        "rate_limit": {"type": "object", "additionalProperties": False, "required": ["per_second"],
                       "description": "requests per second per client address; over it: 429 with Retry-After",
                       "properties": {"per_second": {"type": "number", "exclusiveMinimum": 0},
                                      "burst": {"type": "integer", "minimum": 1}}},
    },
}

_DEFAULT_HEADER = {"hmac": "X-Signature", "api_key": "X-Api-Key", "bearer": "Authorization"}


def http_source(config: dict | None, env: Mapping[str, str]) -> HttpSource | None:
    """The model of a schema-checked `source.http`, its secret read from `env` (None when unset)."""
    if config is None:
        return None
    (kind, auth), = config["auth"].items()
    rate = config.get("rate_limit", {})
    return HttpSource(
        path=config["path"],
        auth=HttpAuth(kind=kind, secret_env=auth["secret_env"], secret=env.get(auth["secret_env"]) or None,
                      header=auth.get("header", _DEFAULT_HEADER[kind]),
                      timestamp_header=auth.get("timestamp_header", HttpAuth.timestamp_header),
                      window=seconds(auth.get("window", HttpAuth.window))),
        idempotency_header=config.get("idempotency_header", HttpSource.idempotency_header),
        headers=tuple(config.get("headers", ())), rate=rate.get("per_second"), burst=rate.get("burst"))
