"""The schema of each adapter kind's YAML file; secret fields are marked `writeOnly`."""

from __future__ import annotations

DURATION = {"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$"}, {"type": "integer", "minimum": 0}],
            "description": "a duration: 500ms, 10s, 5m, 1h, or whole seconds", "examples": ["10s"]}
SECRET = {"type": "string", "writeOnly": True, "description": "a secret: write ${VAR} and export VAR"}
_TEXT = {"type": "string"}
_FILE = {"type": "string", "description": "a file path relative to the project root"}


def _operations(operation: dict) -> dict:
    return {"type": "object", "minProperties": 1, "description": "the operations routes may call, by name",
            "additionalProperties": {"type": "object", "additionalProperties": False, **operation}}


_COUNT = {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string", "pattern": r"^\d+(\.\d+)?$"}]}
RATE_LIMIT = {"type": "object", "additionalProperties": False, "required": ["per_second"],
              "description": "calls per second, shared by the process's threads (README: endpoints that fail)",
              "properties": {"per_second": _COUNT,
                             "burst": {**_COUNT, "description": "calls saved up (default: per_second)"},
                             "max_wait": {**DURATION, "description": "longest wait for a turn (default 5s)"}},
              "examples": [{"per_second": 20, "burst": 40}]}
CIRCUIT_BREAKER = {"type": "object", "additionalProperties": False,
                   "description": "open after `failures` transient failures within `within`; while open, "
                                  "routes calling the adapter stop taking messages; a trial after `open_for`",
                   "properties": {"failures": {**_COUNT, "description": "default 5"},
                                  "within": {**DURATION, "description": "default 30s"},
                                  "open_for": {**DURATION, "description": "default 10s"}},
                   "examples": [{"failures": 5, "within": "30s", "open_for": "10s"}]}


def _adapter(kind: str, description: str, properties: dict, required: list[str]) -> dict:
    properties = {**properties, "rate_limit": RATE_LIMIT, "circuit_breaker": CIRCUIT_BREAKER}
    return {
        "description": description, "type": "object", "additionalProperties": False,
        "required": ["name", "kind", *required],
        "properties": {"name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$",
                                "description": "the name routes use in `to: {adapter: NAME}`"},
                       "kind": {"const": kind}, "description": _TEXT, **properties},
    }


_URL = {"type": "string", "pattern": "^https?://", "description": "the token endpoint; tokens never go elsewhere"}
_REFRESH = {"anyOf": [DURATION, {"type": "string", "pattern": r"^\d{1,2}(\.\d+)?%$"}],
            "description": "fetch a new token this long (or this share of its lifetime) before it expires",
            "examples": ["60s", "10%"]}
_TEMPLATES = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}
AUTH = {
    "type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
    "description": "one of bearer, basic, hmac, oauth2, token, signature (README: REST auth)",
    "properties": {
        "bearer": {"type": "object", "additionalProperties": False, "required": ["token"],
                   "properties": {"token": SECRET}},
        "basic": {"type": "object", "additionalProperties": False, "required": ["username", "password"],
                  "properties": {"username": _TEXT, "password": SECRET}},
        "hmac": {"type": "object", "additionalProperties": False, "required": ["key_id", "secret"],
                 "properties": {"key_id": _TEXT, "secret": SECRET, "header": _TEXT,
                                "algorithm": {"enum": ["sha256", "sha512"]}}},
        "oauth2": {"type": "object", "additionalProperties": False, "required": ["url", "client_id", "client_secret"],
                   "description": "OAuth2 client credentials (RFC 6749 4.4); the token goes in Authorization: Bearer",
                   "properties": {"url": _URL, "client_id": _TEXT, "client_secret": SECRET,
                                  "scopes": {"type": "array", "items": _TEXT},
                                  "client_auth": {"enum": ["basic", "body"],
                                                  "description": "HTTP Basic (default) or in the form"},
                                  "lifetime": {**DURATION, "description": "when the answer has no expires_in"},
                                  "refresh_before": _REFRESH}},
        "token": {"type": "object", "additionalProperties": False, "required": ["url", "value", "headers"],
                  "description": "a vendor's login endpoint: POST body, read the token, send it in headers",
                  "properties": {"url": _URL,
                                 "body": {"type": "object", "description": "sent as JSON (or a form: form: true)"},
                                 "form": {"type": "boolean"},
                                 "value": {"type": "string", "description": "JMESPath to the token in the answer",
                                           "examples": ["data.access_token"]},
                                 "expires_in": {"type": "string",
                                                "description": "JMESPath to its lifetime in seconds"},
                                 "lifetime": {**DURATION, "description": "when expires_in is absent (default 1h)"},
                                 "headers": {**_TEMPLATES, "examples": [{"X-Token": "{token}"}]},
                                 "refresh_before": _REFRESH}},
        "signature": {"type": "object", "additionalProperties": False, "required": ["secret"],
                      "oneOf": [{"required": ["parts"]}, {"required": ["template"]}],
                      "description": "a signature computed for every request",
                      "properties": {"secret": SECRET, "app_key": _TEXT,
                                     "parts": {"type": "array", "minItems": 1, "items": {"enum": [
                                         "method", "path", "query", "target", "body", "body_sha256", "body_md5",
                                         "timestamp", "nonce", "app_key", "secret"]}},
                                     "join": {"type": "string", "description": "between parts; default a newline"},
                                     "template": {"type": "string", "examples": ["{app_key}{timestamp}{nonce}"]},
                                     "algorithm": {"enum": ["hmac-sha256", "hmac-sha1", "hmac-sha512", "hmac-md5",
                                                            "sha256", "md5"]},
                                     "encoding": {"enum": ["hex", "hex-upper", "base64"]},
                                     "timestamp": {"enum": ["s", "ms"]},
                                     "headers": {**_TEMPLATES, "examples": [{"X-Signature": "{signature}"}]}}}}}

REST = _adapter("rest", "An HTTP/JSON endpoint such as a ledger API.", {
    "base_url": {"type": "string", "pattern": "^https?://", "description": "scheme, host and port; fixed",
                 "examples": ["https://ledger.example.com/api"]},
    "timeout": DURATION,
    "connect_timeout": DURATION,
    "verify_tls": {"type": "boolean"},
    "ca_file": _FILE,
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "idempotency_header": {"anyOf": [{"type": "string"}, {"const": False}],
                           "description": "header carrying message id + step; false to turn off"},
    "auth": AUTH,
    "operations": _operations({
        "required": ["method", "path"],
        "properties": {"method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                       "path": {"type": "string", "pattern": "^/", "description": "path template: /vouchers/{id}",
                                "examples": ["/vouchers/{voucher_no}"]},
                       "query": {"type": "object", "additionalProperties": {"type": "string"}},
                       "headers": {"type": "object", "additionalProperties": {"type": "string"}}}}),
}, ["base_url", "operations"])

SOAP = _adapter("soap", "A SOAP service described by a local WSDL (tax, OA, older ERP).", {
    "wsdl": {**_FILE, "description": "the WSDL file, under adapters/; never fetched at run time"},
    "service": _TEXT, "port": _TEXT,
    "address": {"type": "string", "pattern": "^https?://", "description": "overrides the WSDL's endpoint"},
    "timeout": DURATION,
    "wsse": {"type": "object", "additionalProperties": False, "required": ["username", "password"],
             "properties": {"username": _TEXT, "password": SECRET}},
    "operations": _operations({"required": ["operation"],
                               "properties": {"operation": {"type": "string", "description": "the WSDL operation"}}}),
}, ["wsdl", "operations"])

SFTP = _adapter("sftp", "A bank's SFTP server: payment files out, statements in.", {
    "host": _TEXT,
    "port": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 65535},
                       {"type": "string", "pattern": "^[0-9]{1,5}$"}],
             "description": "a whole number, or ${VAR} holding one", "examples": [22]},
    "username": _TEXT, "password": SECRET, "private_key": {**_FILE, "writeOnly": True},
    "known_hosts": {**_FILE, "description": "pinned host keys; never auto-added"},
    "timeout": DURATION,
    "operations": _operations({"required": ["put"],
                               "properties": {"put": {"type": "string", "examples": ["/outbox/{message_id}.xml"]},
                                              "atomic": {"type": "boolean"}}}),
    "inbound": {"type": "object", "additionalProperties": {
        "type": "object", "additionalProperties": False, "required": ["poll", "publish_to"],
        "properties": {"poll": {"type": "string", "examples": ["/inbox/*.xml"]}, "every": DURATION,
                       "archive": _TEXT, "delete": {"type": "boolean"},
                       "max_bytes": {"type": "integer", "minimum": 1},
                       "publish_to": {"type": "object", "additionalProperties": False,
                                      "required": ["exchange", "routing_key"],
                                      "properties": {"exchange": _TEXT, "routing_key": _TEXT}}}}},
}, ["host", "username", "known_hosts", "operations"])

ADAPTER_KINDS = {"rest": REST, "soap": SOAP, "sftp": SFTP}
FILE_FIELDS = {"soap": ("wsdl",)}  # files that must exist when the adapter is loaded
