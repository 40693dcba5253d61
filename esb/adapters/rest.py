"""REST adapter: each operation is one HTTP request through a urllib3 connection pool.

Request
    URL        base_url + the operation's path template. Each `{name}` takes a field of the JSON
               body (dotted: `{debtor.iban}`, `{lines.0.id}`; `{message_id}` is always the
               envelope's id) and is percent-encoded as ONE path segment: `/`, `?`, `#` and `%`
               cannot escape it, and an empty, `.` or `..` value is refused. `query:` values are
               templates too, percent-encoded. The scheme, host and port of base_url are fixed.
    body       POST, PUT, PATCH send the message body: JSON through esb.transform.jsoncodec
               (Decimals digit for digit), XML and text as they are, each with its content type.
               GET and DELETE send none.
    headers    the adapter's `headers`, then the operation's, then (tracing on) the W3C `traceparent`
               and `tracestate` of the call's span, then `Idempotency-Key` (renamed by
               `idempotency_header`, turned off by `false`), `X-Message-Id`, then auth. The key
               and the id are sent percent-encoded outside printable ASCII and for `%` itself.
    limits     connect timeout 5s, total timeout 10s per call (redirects included), 128 pooled
               connections, TLS verified (against `ca_file` instead of the system's CAs or
               SSL_CERT_FILE when given), responses up to 64 MiB, cookies never kept between
               calls. HTTP_PROXY and friends are not read: the adapter connects to base_url's
               host itself, as configured.
    redirects  to the same scheme, host and port are followed, 3 at most: 303 becomes a GET
               without a body, 301/302/307/308 re-send the same method and body (re-signed), so a
               POST is never silently turned into a GET. A redirect anywhere else is refused.

Outcome
    2xx                                  a Message with the same id and headers: a JSON body parsed
                                         (non-integers as Decimal), XML and text as str, any other
                                         media type as bytes, an empty body as None
    429, 5xx, timeouts, connection and   TransientError; `retry_after` (seconds) from a
    remote protocol errors               Retry-After header, in seconds or as an HTTP date
    4xx, other 3xx, a request that       PermanentError with the status and at most 200 characters
    cannot be sent                       of the response body
    2xx whose JSON does not parse        TransformError (permanent)
Every error names adapter, operation, method and path template (never the rendered URL: it may
carry personal data) and has each configured secret masked; the urllib3 cause is not chained, so
a traceback cannot show a URL or a header either.

Why urllib3 and not httpx: a route runs its calls on up to `concurrency` threads at once, and the
worker process is then bound by the GIL. Measured on 2 cores, 64 threads POSTing to a loopback
endpoint that answers after 20 ms: httpx 0.28 cost 1,311-1,507 µs of CPU per request (its
connection pool re-scans every connection under a lock for each request), urllib3 2.x 379-416 µs.

Auth (`auth:`, one of)
    bearer, basic   a fixed Authorization header
    hmac            the signature below
    oauth2, token   a token fetched from a token endpoint and cached per process; after a 401 to a
                    request that carried it, one new token and one more try (esb.adapters.auth)
    signature       a configurable request signature (esb.adapters.auth)

HMAC signing (`auth: {hmac: {key_id, secret, header, algorithm}}`)
    Every request, and every redirected one again, carries
        X-Key-Id     the configured key_id
        X-Timestamp  when the request was signed, in whole unix seconds
        X-Signature  (or the header named by `header`): lowercase hex
                     HMAC-<algorithm>(key = secret as UTF-8, msg = canonical as UTF-8)
    with `algorithm` sha256 (the default) or sha512, and `canonical` four lines joined by "\\n"
    (no trailing newline):
        METHOD       upper case                                POST
        TARGET       the request target exactly as sent:       /api/vouchers/A%2FB?expand=lines
                     the percent-encoded path, then "?" and the
                     query string only when there is one
        TIMESTAMP    the X-Timestamp value                     1735689600
        BODY_SHA256  lowercase hex SHA-256 of the body bytes   e3b0c442...b855 (the hash of b"")
    A receiver verifies it like this (and should refuse timestamps more than a few minutes off):

        canonical = "\\n".join([method, raw_target, timestamp, hashlib.sha256(body).hexdigest()])
        expected = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, signature)
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import hmac
import re
import ssl
import string
import time
import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import SplitResult, quote, urlencode, urljoin, urlsplit

import urllib3
import urllib3.exceptions

from esb import __version__, tracecontext
from esb.adapters import auth as credentials
from esb.adapters.spec import MASK, AdapterSpec, positive_seconds
from esb.errors import ConfigError, PermanentError, ProcessingError, TransformError, TransientError
from esb.loading.secrets import credentials as secret_values
from esb.loading.secrets import is_secret_name
from esb.message import BINARY, JSON, XML, Message
from esb.transform import jsoncodec
from esb.transform.numbers import plain

DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
MAX_CONNECTIONS = 128          # steps run on a thread pool per route; many routes may share one adapter
MAX_REDIRECTS = 3
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 64 * 1024
SNIPPET_CHARS = 200
DEFAULT_IDEMPOTENCY_HEADER = "Idempotency-Key"

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FIELD = re.compile(r"\{([^{}]*)\}")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
# printable ASCII except `%`: quoting with this is reversible, so distinct keys stay distinct
_HEADER_SAFE = "".join(c for c in string.printable if c not in string.whitespace and c != "%")
# what a redirect's path may keep as it is (RFC 3986 pchar and "/", plus existing %-escapes)
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class _Failure(Exception):
    """An outcome raised inside the adapter and turned into an esb error, once, by `call`."""

    def __init__(self, kind: type[ProcessingError], text: str, retry_after: float | None = None):
        super().__init__(text)
        self.kind, self.text, self.retry_after = kind, text, retry_after


class _Reply(NamedTuple):
    status: int
    headers: urllib3.HTTPHeaderDict
    body: bytes


@dataclasses.dataclass
class _Request:
    """One request to the adapter's origin (redirects never leave it, so only the target changes)."""

    method: str
    target: str                        # the percent-encoded path, then "?" and the query if any
    headers: urllib3.HTTPHeaderDict
    content: bytes | None


@dataclasses.dataclass(frozen=True)
class _Operation:
    name: str
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]


class RestAdapter:
    """One configured REST endpoint; thread-safe, one connection pool, opened once per process."""

    def __init__(self, spec: AdapterSpec, root: Path):
        settings = spec.settings
        self.name = spec.name
        self._prefix, self._origin = _base_url(spec)
        self._operations = {name: _operation(spec, name, op) for name, op in spec.operations.items()}
        self._headers = _header_values(spec, dict(settings.get("headers") or {}))
        idempotency = settings.get("idempotency_header", DEFAULT_IDEMPOTENCY_HEADER)
        self._idempotency_header = idempotency or None
        self._total = positive_seconds(spec, "timeout", spec.settings.get("timeout"), DEFAULT_TIMEOUT)
        self._auth = _auth(spec, settings.get("auth") or {}, root, self._total)
        self._secrets = _secrets(self._auth, self._headers, self._operations.values(), spec.secrets)
        connect = positive_seconds(spec, "connect_timeout", spec.settings.get("connect_timeout"),
                                   DEFAULT_CONNECT_TIMEOUT)
        self._connect = min(connect, self._total)
        self._closed = False
        # Redirects are followed by hand (only to the same origin, see _follow); urllib3 keeps no
        # cookies; block=True: more than MAX_CONNECTIONS calls at once wait for a free connection.
        _check_ca_file(spec, root)
        scheme, host, port = self._origin
        pool = urllib3.HTTPSConnectionPool if scheme == "https" else urllib3.HTTPConnectionPool
        tls = {"ssl_context": _tls(spec, root)} if scheme == "https" else {}
        self._pool = pool(host, port, maxsize=MAX_CONNECTIONS, block=True, retries=False, **tls)

    def call(self, operation: str, message: Message, *, idempotency_key: str) -> Message:
        op = self._operations.get(operation)
        if op is None:
            raise PermanentError(self._redact(f"{self.name}: no operation '{operation}' "
                                              f"(the adapter has {', '.join(sorted(self._operations))})"))
        try:
            return self._call(op, message, idempotency_key)
        except _Failure as failure:
            text = self._redact(f"{self.name}.{op.name} ({op.method} {op.path}): {failure.text}")
            if failure.kind is TransientError:
                raise TransientError(text, retry_after=failure.retry_after) from None
            raise failure.kind(text) from None

    def close(self) -> None:
        self._closed = True
        self._pool.close()
        self._auth.close()

    def __repr__(self) -> str:
        return f"RestAdapter({self.name!r})"

    # -- one call --------------------------------------------------------------------------
    def _call(self, op: _Operation, message: Message, idempotency_key: str) -> Message:
        deadline = time.monotonic() + self._total
        request = self._request(op, message, idempotency_key)
        redirects, refreshed = 0, False
        while True:
            token = self._auth.sign(request)
            reply = self._exchange(request, deadline)
            if reply.status == 401 and token is not None and not refreshed:
                self._auth.invalidate(token)  # expired or revoked early: one new token, one more try
                refreshed = True
                continue
            if reply.status not in _REDIRECTS:
                return _outcome(reply, message)
            redirects += 1
            if redirects > MAX_REDIRECTS:
                raise _Failure(PermanentError, f"more than {MAX_REDIRECTS} redirects")
            request = self._follow(request, reply)

    def _request(self, op: _Operation, message: Message, idempotency_key: str) -> _Request:
        path = _FIELD.sub(lambda m: _segment(m.group(1), _lookup(message, m.group(1))), op.path)
        params = [(name, _FIELD.sub(lambda m: _lookup(message, m.group(1)), value))
                  for name, value in op.query.items()]
        content, content_type = _content(op.method, message)
        headers = urllib3.HTTPHeaderDict({"User-Agent": f"esb/{__version__}"})
        if content_type:
            headers["Content-Type"] = content_type
        for name, value in (*self._headers.items(), *op.headers.items()):
            headers[name] = value
        if (trace := tracecontext.bound(message.message_id)) is not None:  # tracing on: W3C traceparent
            headers.update(trace.headers)
        if self._idempotency_header:
            headers[self._idempotency_header] = quote(idempotency_key, safe=_HEADER_SAFE)
        headers["X-Message-Id"] = quote(message.message_id, safe=_HEADER_SAFE)
        # form encoding, as before: a space is "+"
        return _Request(op.method, _target(self._prefix + path, urlencode(params)), headers, content)

    def _exchange(self, request: _Request, deadline: float) -> _Reply:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Failure(TransientError, f"timed out after {self._total:g}s")
        timeout = urllib3.Timeout(connect=min(self._connect, remaining), read=remaining)
        try:
            response = self._pool.urlopen(request.method, request.target, body=request.content,
                                          headers=request.headers, redirect=False, assert_same_host=False,
                                          preload_content=False, timeout=timeout, pool_timeout=remaining)
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            raise _transport_failure(exc, self._total, self._closed) from None
        try:
            return _Reply(response.status, response.headers, self._read(response, deadline))
        except urllib3.exceptions.HTTPError as exc:
            raise _transport_failure(exc, self._total, self._closed) from None
        finally:
            response.close()  # a no-op after a complete read; otherwise drops a half-read connection
            response.release_conn()

    def _read(self, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        length = response.length_remaining  # None unless the server sized the body (Content-Length, not chunked)
        # A body no larger than one chunk (nearly every answer) in one read, without stream()'s
        # generator and its second read that finds the end.
        small = length is not None and length <= _READ_CHUNK
        chunks, size = [], 0
        for chunk in (response.read(),) if small else response.stream(_READ_CHUNK):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise _Failure(PermanentError, f"HTTP {response.status}: the response is larger than "
                                               f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB")
            if time.monotonic() > deadline:
                raise _Failure(TransientError, f"timed out after {self._total:g}s reading the response")
            chunks.append(chunk)
        return b"".join(chunks)

    def _follow(self, request: _Request, reply: _Reply) -> _Request:
        location = reply.headers.get("Location")
        if not location:
            raise _Failure(PermanentError, f"HTTP {reply.status}: a redirect without a Location header")
        try:
            url = urlsplit(urljoin(_show_origin(self._origin) + request.target, location.strip()))
            origin = _origin(url)
        except ValueError:
            raise _Failure(PermanentError, f"HTTP {reply.status}: a redirect to an invalid location") from None
        if origin != self._origin:
            raise _Failure(PermanentError, f"HTTP {reply.status}: refused a redirect to another host, "
                                           f"{_show_origin(origin)}; only {_show_origin(self._origin)} is "
                                           "followed")
        method, content, headers = request.method, request.content, request.headers.copy()
        if reply.status == 303:  # "see other": the request was handled; fetch the result
            method, content = "GET", None
            headers.discard("Content-Type")
        target = _target(quote(url.path or "/", safe=_PATH_SAFE), quote(url.query, safe=_PATH_SAFE + "?"))
        return _Request(method, target, headers, content)

    def _redact(self, text: str) -> str:
        for secret in (*self._secrets, *self._auth.issued):  # tokens fetched so far too
            text = text.replace(secret, MASK)
        return text


# -- building requests -------------------------------------------------------------------------
def _lookup(message: Message, name: str) -> str:
    """The text a template field stands for."""
    if name == "message_id":
        return message.message_id
    node = message.body
    if not isinstance(node, dict):
        raise _Failure(PermanentError, f"the field '{name}' is needed but the body is not a JSON object")
    for part in name.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _Failure(PermanentError, f"the body has no field '{name}'")
    return _scalar(name, node)


def _scalar(name: str, value: Any) -> str:
    if value is None:
        raise _Failure(PermanentError, f"the field '{name}' is null")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain(value, f"the field '{name}'")  # 1000, never 1E+3, in a URL or a header
    if isinstance(value, (str, int)):
        return str(value)
    raise _Failure(PermanentError, f"the field '{name}' is a {type(value).__name__}, not a text or a number")


def _segment(name: str, text: str) -> str:
    if text in ("", ".", ".."):
        raise _Failure(PermanentError, f"the field '{name}' is {text!r}, which cannot be a path segment")
    return quote(text, safe="")


def _content(method: str, message: Message) -> tuple[bytes | None, str | None]:
    if method not in _BODY_METHODS:
        return None, None
    if message.is_json:
        try:
            return message.json_bytes(), JSON
        except TransformError as exc:
            raise _Failure(TransformError, f"cannot send the body as JSON: {exc.message}") from None
    body = message.body
    if isinstance(body, str):
        return body.encode("utf-8"), message.content_type
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), message.content_type
    if body is None:
        return b"", message.content_type
    raise _Failure(TransformError, f"a {type(body).__name__} body cannot be sent as {message.content_type}")


def _target(path: str, query: str) -> str:
    """The request target: the encoded path, then "?" and the encoded query when there is one."""
    return f"{path}?{query}" if query else path


# -- outcomes ----------------------------------------------------------------------------------
def _outcome(reply: _Reply, message: Message) -> Message:
    if 200 <= reply.status < 300:
        body, content_type, text = _response_body(reply)
        return message.with_body(body, content_type, text)
    text = f"HTTP {reply.status}{_snippet(reply.body)}"
    if reply.status == 429 or reply.status >= 500:
        raise _Failure(TransientError, text, _retry_after(reply.headers.get("Retry-After")))
    raise _Failure(PermanentError, text)


def _response_body(reply: _Reply) -> tuple[Any, str, bytes | None]:
    """The body, its content type, and the JSON text to send it on as (Message.json_text)."""
    if not reply.body:
        return None, JSON, None
    media, charset = _media_type(reply.headers.get("Content-Type", ""))
    if media == JSON or media.endswith("+json"):
        try:
            body, text = jsoncodec.loads_keeping_text(reply.body)
        except TransformError as exc:
            raise _Failure(TransformError, f"HTTP {reply.status}: the response is not valid JSON: "
                                           f"{exc.message}") from None
        return body, JSON, text
    if media in (XML, "text/xml") or media.endswith("+xml"):
        return _text(reply, charset), XML, None
    if media.startswith("text/"):
        return _text(reply, charset), media, None
    return reply.body, media or BINARY, None


def _media_type(value: str) -> tuple[str, str | None]:
    media, *params = value.split(";")
    charset = next((p.split("=", 1)[1].strip().strip('"') for p in params
                    if p.strip().lower().startswith("charset=")), None)
    return media.strip().lower(), charset


def _text(reply: _Reply, charset: str | None) -> str:
    try:
        return reply.body.decode(charset or "utf-8")
    except (LookupError, UnicodeDecodeError) as exc:
        raise _Failure(TransformError, f"HTTP {reply.status}: the response text cannot be decoded as "
                                       f"{charset or 'utf-8'} ({type(exc).__name__})") from None


def _snippet(body: bytes) -> str:
    text = " ".join(body[: SNIPPET_CHARS * 4].decode("utf-8", "replace").split())
    if not text:
        return ""
    return ": " + (text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…")


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: `120` or `Wed, 21 Oct 2015 07:28:00 GMT`."""
    value = (value or "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _transport_failure(exc: Exception, total: float, closed: bool) -> _Failure:
    if closed:  # a reload closed this adapter while a message was in flight
        return _Failure(TransientError, "the adapter was closed during the call")
    detail = f"{type(exc).__name__}: {str(exc)[:SNIPPET_CHARS]}" if str(exc) else type(exc).__name__
    errors = urllib3.exceptions
    # before TimeoutError: urllib3 2.x derives NewConnectionError (refused, unreachable) from it
    if isinstance(exc, (errors.NewConnectionError, errors.ProtocolError, errors.SSLError, errors.ProxyError)):
        return _Failure(TransientError, f"connection failed ({detail})")
    if isinstance(exc, errors.TimeoutError):
        return _Failure(TransientError, f"timed out after {total:g}s ({detail})")
    if isinstance(exc, (ValueError, errors.LocationValueError)):  # e.g. http.client refusing a header
        return _Failure(PermanentError, f"the request could not be sent ({detail})")
    return _Failure(TransientError, f"the exchange failed ({detail})")


# -- auth --------------------------------------------------------------------------------------
class _NoAuth:
    """No credentials; the base of the others. sign() returns the token it sent, if any."""

    secrets: tuple[str, ...] = ()
    issued: tuple[str, ...] = ()

    def sign(self, request: _Request) -> str | None:
        return None

    def invalidate(self, token: str) -> None:
        pass

    def close(self) -> None:
        pass


class _HeaderAuth(_NoAuth):
    """bearer and basic: one fixed Authorization header."""

    def __init__(self, value: str, secrets: tuple[str, ...]):
        self._value = value
        self.secrets = (*secrets, value)

    def sign(self, request: _Request) -> None:
        request.headers["Authorization"] = self._value


class _HmacAuth(_NoAuth):
    """The signature described in this module's docstring."""

    def __init__(self, key_id: str, secret: str, header: str, algorithm: str):
        self._key_id, self._secret, self._header = key_id, secret.encode("utf-8"), header
        self._digest = getattr(hashlib, algorithm)
        self.secrets = (secret,)

    def sign(self, request: _Request) -> None:
        timestamp = str(int(time.time()))
        canonical = "\n".join([request.method, request.target, timestamp,
                               hashlib.sha256(request.content or b"").hexdigest()])
        request.headers["X-Key-Id"] = self._key_id
        request.headers["X-Timestamp"] = timestamp
        request.headers[self._header] = hmac.new(self._secret, canonical.encode("utf-8"), self._digest).hexdigest()


class _SignatureAuth(_NoAuth):
    """`signature:` — the configurable request signature of esb.adapters.auth."""

    def __init__(self, signer: credentials.Signer, secrets: tuple[str, ...]):
        self._signer, self.secrets = signer, secrets

    def sign(self, request: _Request) -> None:
        request.headers.update(self._signer.headers(request.method, request.target, request.content))


class _TokenAuth(_NoAuth):
    """`oauth2:` and `token:` — a fetched, cached token in the configured headers."""

    def __init__(self, cache: credentials.TokenCache, endpoint: credentials.TokenEndpoint,
                 headers: Mapping[str, str], secrets: tuple[str, ...]):
        self._cache, self._endpoint, self._headers, self.secrets = cache, endpoint, headers, secrets

    @property
    def issued(self) -> tuple[str, ...]:
        return self._cache.issued

    def sign(self, request: _Request) -> str:
        try:
            token = self._cache.get()
        except credentials.TokenError as exc:
            raise _Failure(TransientError if exc.transient else PermanentError, exc.text) from None
        for name, template in self._headers.items():
            request.headers[name] = template.replace("{token}", token)
        return token

    def invalidate(self, token: str) -> None:
        self._cache.invalidate(token)

    def close(self) -> None:
        self._endpoint.close()


def _auth(spec: AdapterSpec, config: Mapping[str, Any], root: Path, timeout: float) -> _NoAuth:
    if "bearer" in config:
        token = config["bearer"]["token"]
        auth: Any = _HeaderAuth(f"Bearer {token}", (token,))
    elif "basic" in config:
        user, password = config["basic"]["username"], config["basic"]["password"]
        encoded = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        auth = _HeaderAuth(f"Basic {encoded}", (password, encoded))
    elif "hmac" in config:
        c = config["hmac"]
        auth = _HmacAuth(c["key_id"], c["secret"], c.get("header") or "X-Signature", c.get("algorithm") or "sha256")
        _header_values(spec, {"X-Key-Id": c["key_id"]})
    elif config:
        try:
            auth = _fetched_auth(spec, config, root, timeout)
        except credentials.AuthConfigError as exc:
            raise ConfigError(f"the adapter '{spec.name}': auth: {exc}", path=spec.path) from None
    else:
        return _NoAuth()
    for secret in auth.secrets:
        if not secret.isascii() or not secret.isprintable():
            raise ConfigError(f"the adapter '{spec.name}' has an auth secret that is not printable ASCII",
                              path=spec.path, hint="HTTP headers carry ASCII only")
    return auth


def _fetched_auth(spec: AdapterSpec, config: Mapping[str, Any], root: Path, timeout: float) -> _NoAuth:
    """oauth2, token and signature: credentials fetched or computed per request."""
    if "signature" in config:
        c = config["signature"]
        return _SignatureAuth(credentials.Signer(c), (c["secret"],))
    kind, c = next(iter(config.items()))
    endpoint = credentials.TokenEndpoint(_token_url(spec, c["url"]), timeout, _tls(spec, root))
    if kind == "oauth2":
        fetch, headers = credentials.oauth2_fetch(endpoint, c), {"Authorization": "Bearer {token}"}
        secrets = (c["client_secret"], base64.b64encode(f"{c['client_id']}:{c['client_secret']}".encode()).decode())
    else:
        fetch, headers = credentials.vendor_fetch(endpoint, c), dict(c["headers"])
        secrets = tuple(secret_values(dict(c.get("body") or {}), "body"))
    for name, template in headers.items():
        if template.replace("{token}", "").count("{") or "{token}" not in template:
            raise ConfigError(f"the adapter '{spec.name}': auth: the header '{name}' must hold {{token}} "
                              "and no other field", path=spec.path)
    _header_values(spec, headers)
    lifetime = positive_seconds(spec, "lifetime", c.get("lifetime"), credentials.DEFAULT_LIFETIME)
    cache = credentials.TokenCache(fetch, lifetime, credentials.refresh_before(c.get("refresh_before")))
    return _TokenAuth(cache, endpoint, headers, secrets)


def _token_url(spec: AdapterSpec, raw: str) -> str:
    try:
        url = urlsplit(raw.strip())
        origin = _origin(url)
    except ValueError:
        raise ConfigError(f"the adapter '{spec.name}' has an invalid token url", path=spec.path) from None
    if "@" in url.netloc:
        raise ConfigError(f"the adapter '{spec.name}' has a user name or password in its token url", path=spec.path,
                          hint="put client credentials under `auth:`, from ${VAR}")
    if origin[0] not in _DEFAULT_PORTS or not origin[1] or url.fragment:
        raise ConfigError(f"the adapter '{spec.name}' needs its token url as http(s)://host[:port]/path",
                          path=spec.path)
    return raw.strip()


def _secrets(auth: Any, headers: Mapping[str, str], operations: Any, known: Iterable[str] = ()) -> tuple[str, ...]:
    """Every configured value to mask in error messages, longest first (the spec's secrets too)."""
    found = set(auth.secrets) | set(known)
    for mapping in (headers, *(op.headers for op in operations), *(op.query for op in operations)):
        found.update(v for k, v in mapping.items() if is_secret_name(k) and not _FIELD.search(v))
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


# -- configuration -----------------------------------------------------------------------------
def _origin(url: SplitResult) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL; ValueError for a port that is not a number."""
    return url.scheme.lower(), (url.hostname or ""), url.port or _DEFAULT_PORTS.get(url.scheme.lower())


def _show_origin(origin: tuple[str, str, int | None]) -> str:
    scheme, host, port = origin
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _base_url(spec: AdapterSpec) -> tuple[str, tuple[str, str, int | None]]:
    """base_url as (path prefix without a trailing slash, percent-encoded; origin)."""
    raw = str(spec.settings.get("base_url", "")).strip()
    try:
        url = urlsplit(raw)
        origin = _origin(url)
    except ValueError:
        raise ConfigError(f"the adapter '{spec.name}' has an invalid base_url", path=spec.path) from None
    if "@" in url.netloc:  # never echo the URL: it holds a credential
        raise ConfigError(f"the adapter '{spec.name}' has a user name or password in base_url", path=spec.path,
                          hint="put credentials under `auth:` (basic), from ${VAR}")
    if origin[0] not in _DEFAULT_PORTS or not origin[1] or "?" in raw or "#" in raw:  # even an empty query
        raise ConfigError(f"the adapter '{spec.name}' needs base_url as http(s)://host[:port][/prefix], "
                          "without a query or fragment", path=spec.path)
    return quote(url.path.rstrip("/"), safe=_PATH_SAFE), origin


def _operation(spec: AdapterSpec, name: str, config: Mapping[str, Any]) -> _Operation:
    path = config["path"]
    templates = [path, *(config.get("query") or {}).values()]
    for template in templates:
        rest = _FIELD.sub("", template)
        bad = [f for f in _FIELD.findall(template) if not _FIELD_NAME.match(f)]
        if "{" in rest or "}" in rest or bad:
            raise ConfigError(f"the operation '{name}' of '{spec.name}' has a malformed template '{template}'",
                              path=spec.path, hint="write {field} or {dotted.field}")
    if "?" in path or "#" in path:
        raise ConfigError(f"the operation '{name}' of '{spec.name}' has '?' or '#' in its path", path=spec.path,
                          hint="put query parameters under `query:`")
    return _Operation(name, config["method"].upper(), path, dict(config.get("query") or {}),
                      _header_values(spec, dict(config.get("headers") or {})))


def _header_values(spec: AdapterSpec, headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not (str(value).isascii() and str(value).isprintable()):
            raise ConfigError(f"the header '{name}' of adapter '{spec.name}' is not printable ASCII",
                              path=spec.path, hint="HTTP headers carry ASCII only")
    return {name: str(value) for name, value in headers.items()}



def _check_ca_file(spec: AdapterSpec, root: Path) -> None:
    ca_file = spec.settings.get("ca_file")
    if ca_file and not (root / ca_file).is_file():
        raise ConfigError(f"the adapter '{spec.name}' names a ca_file that does not exist: {ca_file}",
                          path=spec.path)


def _tls(spec: AdapterSpec, root: Path) -> ssl.SSLContext:
    """The TLS context of an https:// adapter: the system's CAs (or SSL_CERT_FILE), or ca_file."""
    ca_file = spec.settings.get("ca_file")
    if spec.settings.get("verify_tls") is False:
        # The adapter file turns verification off on purpose; urllib3's warning on every call
        # would only repeat that (and tests turn warnings into errors).
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=str(root / ca_file) if ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"the adapter '{spec.name}' cannot load ca_file {ca_file}: {exc}", path=spec.path) from None
