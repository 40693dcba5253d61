"""Credentials a REST adapter fetches or computes per request: OAuth2 and vendor tokens, signatures.

Tokens (`auth: {oauth2: ...}` and `auth: {token: ...}`)
    A TokenCache holds one token per adapter per process. The first call fetches it; calls made
    meanwhile, on any thread, wait for that one fetch. It is fetched again `refresh_before` (60s,
    or a share such as "10%" of the lifetime; at most half the lifetime) before it expires, and
    when the API answers 401 to a request that carried it (the request is then sent once more).
    The token request goes to the token URL only: a redirect from it is refused, and the token
    itself is sent only to the adapter's base_url (rest.py refuses redirects to other hosts).

    oauth2   RFC 6749 §4.4: POST `grant_type=client_credentials` (and `scope`, space-separated)
             as a form; the client authenticates with HTTP Basic (`client_auth: basic`, the
             default) or with client_id and client_secret in the form (`client_auth: body`). The
             JSON answer's `access_token` is sent as `Authorization: Bearer ...`, for `expires_in`
             seconds (1h when the answer has none).
    token    a vendor's login endpoint: POST `body` as JSON (or a form: `form: true`), read the
             token at the JMESPath `value` and its lifetime in seconds at the JMESPath
             `expires_in` (else `lifetime`, default 1h), and send it in `headers`, whose values
             are templates with `{token}`.

    A token endpoint that times out, cannot be reached or answers 429/5xx is a TransientError;
    any other answer without a token (bad credentials: 400/401/403) is a PermanentError naming
    the token URL (scheme, host, port and path, never its query) and never a secret. A failed
    fetch is the answer, for one second, to the calls queued behind it (no fetch each).

Signatures (`auth: {signature: ...}`)
    Each request, and each redirected one again, gets a string to sign built from `parts` joined
    by `join` (default "\\n"), or from a `template` such as "{app_key}{timestamp}{nonce}":
        method       upper case: POST
        path         the percent-encoded path as sent: /api/vouchers/A%2FB
        query        the query's name=value pairs as sent (percent-encoded), sorted, joined by "&"
        target       path, then "?" and the query as sent when there is one
        body         the body as UTF-8 text ("" without one)
        body_sha256  lowercase hex SHA-256 of the body bytes (of b"" without one)
        body_md5     lowercase hex MD5 of the body bytes
        timestamp    now, in unix seconds (`timestamp: s`, the default) or milliseconds (`ms`)
        nonce        32 random hex digits, new for every request
        app_key      the configured app_key
        secret       the configured secret (for APIs that hash the secret with the rest)
    `algorithm` hmac-sha256 (default), hmac-sha1, hmac-sha512 or hmac-md5 key the MAC with
    `secret`; sha256 and md5 hash the string alone — some ERP open APIs still sign as
    md5(app_key + timestamp + secret), so md5 is offered for them only. `encoding` hex (lower
    case), hex-upper or base64. `headers` are templates over {signature}, {timestamp}, {nonce},
    {app_key}: e.g. {X-Signature: "{signature}", X-Timestamp: "{timestamp}"}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import jmespath
import jmespath.exceptions
import urllib3
import urllib3.exceptions

from esb.loading.durations import seconds
from esb.transform import jsoncodec

DEFAULT_LIFETIME = 3600.0
DEFAULT_REFRESH_BEFORE = 60.0
TOKEN_HISTORY = 8  # tokens remembered for masking after they were replaced
SNIPPET_CHARS = 200
MAX_ANSWER_BYTES = 1024 * 1024
FAILURE_HOLD = 1.0  # seconds a failed token fetch is the answer without asking again
_TEMPLATE = re.compile(r"\{\{|\}\}|\{([a-z_0-9]+)\}")
SIGN_PARTS = ("method", "path", "query", "target", "body", "body_sha256", "body_md5", "timestamp", "nonce",
              "app_key", "secret")
HEADER_FIELDS = ("signature", "timestamp", "nonce", "app_key")
ALGORITHMS = {"hmac-sha256": "sha256", "hmac-sha1": "sha1", "hmac-sha512": "sha512", "hmac-md5": "md5",
              "sha256": "sha256", "md5": "md5"}
ENCODINGS = ("hex", "hex-upper", "base64")


class AuthConfigError(ValueError):
    """A setting under `auth:` that cannot work; rest.py turns it into a ConfigError."""


class TokenError(Exception):
    """The token endpoint did not give a token; `transient` when trying again later may help."""

    def __init__(self, text: str, transient: bool):
        super().__init__(text)
        self.text, self.transient = text, transient


# -- tokens ------------------------------------------------------------------------------------
Fetch = Callable[[], tuple[str, float | None]]  # -> (token, lifetime in seconds or None)


class TokenCache:
    """One token shared by every thread of the process, fetched by one of them at a time."""

    def __init__(self, fetch: Fetch, lifetime: float, refresh_before: str | float,
                 clock: Callable[[], float] = time.monotonic):
        self._fetch, self._lifetime, self._refresh_before, self._clock = fetch, lifetime, refresh_before, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self.issued: tuple[str, ...] = ()  # replaced, never changed in place: readers need no lock
        self._failed: tuple[TokenError, float] | None = None

    def get(self) -> str:
        token = self._token
        if token is not None and self._clock() < self._renew_at:
            return token
        with self._lock:  # the others wait here for the one fetch, then take its token
            if self._token is None or self._clock() >= self._renew_at:
                token, lifetime = self._fetch_once()
                lifetime = self._lifetime if lifetime is None else lifetime
                self._token, self._renew_at = token, self._clock() + lifetime - self._margin(lifetime)
                self.issued = (*self.issued[1 - TOKEN_HISTORY:], token)
            return self._token

    def _fetch_once(self) -> tuple[str, float | None]:
        """A fetch; its failure is answered to the callers of the next FAILURE_HOLD seconds without
        asking again, so threads queued behind a dead endpoint do not each wait out a timeout."""
        if self._failed is not None and self._clock() < self._failed[1]:
            raise TokenError(self._failed[0].text, self._failed[0].transient)
        try:
            result = self._fetch()
        except TokenError as exc:
            self._failed = (exc, self._clock() + FAILURE_HOLD)
            raise
        self._failed = None
        return result

    def invalidate(self, token: str) -> None:
        """The API refused `token` (401): the next get() fetches a new one, unless another thread did."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _margin(self, lifetime: float) -> float:
        before = self._refresh_before
        wanted = lifetime * float(before[:-1]) / 100 if isinstance(before, str) else before
        return min(wanted, lifetime / 2)


class TokenEndpoint:
    """POSTs to one token URL through its own small connection pool; no redirects followed."""

    def __init__(self, url: str, timeout: float, tls: Any):
        self.url = url
        parts = urlsplit(url)
        self.shown = f"{parts.scheme}://{parts.netloc}{parts.path}"  # never the query: it may hold a key
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        extra = {"ssl_context": tls} if parts.scheme == "https" else {}
        self._pool = urllib3.connection_from_url(url, maxsize=2, block=True, retries=False, **extra)

    def post(self, content: bytes, headers: Mapping[str, str]) -> Any:
        """The JSON answer of a 2xx; TokenError otherwise."""
        try:
            reply = self._pool.urlopen("POST", self._target, body=content, headers=dict(headers),
                                       redirect=False, assert_same_host=False, preload_content=False,
                                       timeout=urllib3.Timeout(total=self._timeout))
            try:
                status, data = reply.status, reply.read(MAX_ANSWER_BYTES + 1)
            finally:
                reply.close()  # a no-op after a complete read; drops a connection left half-read
                reply.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise TokenError(f"the token endpoint {self.shown} could not be reached ({type(exc).__name__})",
                             transient=True) from None
        if not 200 <= status < 300:
            transient = status == 429 or status >= 500
            raise TokenError(f"the token endpoint {self.shown} answered HTTP {status}{_snippet(data)}",
                             transient=transient)
        if len(data) > MAX_ANSWER_BYTES:
            raise TokenError(f"the token endpoint {self.shown} answered more than 1 MiB", transient=False)
        try:
            return jsoncodec.loads(data)
        except Exception:  # noqa: BLE001 - any parse failure is the same answer: not JSON
            raise TokenError(f"the token endpoint {self.shown} answered HTTP {status} without JSON"
                             f"{_snippet(data)}", transient=False) from None

    def close(self) -> None:
        self._pool.close()


def oauth2_fetch(endpoint: TokenEndpoint, config: Mapping[str, Any]) -> Fetch:
    """RFC 6749 §4.4 client credentials."""
    client_id, client_secret = config["client_id"], config["client_secret"]
    form = {"grant_type": "client_credentials"}
    if config.get("scopes"):
        form["scope"] = " ".join(config["scopes"])
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if config.get("client_auth", "basic") == "basic":  # §2.3.1: both form-encoded, then Basic
        pair = f"{_form(client_id)}:{_form(client_secret)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    else:
        form |= {"client_id": client_id, "client_secret": client_secret}
    content = urlencode(form).encode("ascii")

    def fetch() -> tuple[str, float | None]:
        answer = endpoint.post(content, headers)
        return _read(endpoint, answer, "access_token", "expires_in")

    return fetch


def vendor_fetch(endpoint: TokenEndpoint, config: Mapping[str, Any]) -> Fetch:
    """A vendor's login endpoint: a POST of `body`, the token at the JMESPath `value`."""
    body = dict(config.get("body") or {})
    if config.get("form"):
        content, kind = urlencode(body).encode("utf-8"), "application/x-www-form-urlencoded"
    else:
        content, kind = jsoncodec.dumps(body).encode("utf-8"), "application/json"
    headers = {"Content-Type": kind, "Accept": "application/json"}
    value, expires_in = _path(config["value"]), _path(config.get("expires_in"))

    def fetch() -> tuple[str, float | None]:
        return _read(endpoint, endpoint.post(content, headers), value, expires_in)

    return fetch


def _read(endpoint: TokenEndpoint, answer: Any, value: Any, expires_in: Any) -> tuple[str, float | None]:
    token = _search(value, answer)
    if not isinstance(token, str) or not token or not token.isascii() or not token.isprintable():
        where = value if isinstance(value, str) else value.expression
        raise TokenError(f"the token endpoint {endpoint.shown} answered without a token at '{where}'"
                         f"{_snippet(jsoncodec.dumps(answer).encode())}", transient=False)
    lifetime = _search(expires_in, answer) if expires_in else None
    try:
        lifetime = float(lifetime) if lifetime is not None and not isinstance(lifetime, bool) else None
    except (TypeError, ValueError):
        lifetime = None
    return token, (lifetime if lifetime and lifetime > 0 else None)


def _search(path: Any, answer: Any) -> Any:
    if isinstance(path, str):
        return answer.get(path) if isinstance(answer, dict) else None
    return path.search(answer)


def _path(expression: str | None) -> Any:
    if not expression:
        return None
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        raise AuthConfigError(f"'{expression}' is not a JMESPath expression ({exc})") from None


def _form(value: str) -> str:
    return urlencode({"": value})[1:]


def _snippet(body: bytes) -> str:
    text = " ".join(body[: SNIPPET_CHARS * 4].decode("utf-8", "replace").split())
    return ": " + text[:SNIPPET_CHARS] if text else ""


def refresh_before(value: Any) -> str | float:
    """60s, 1m, whole seconds, or a share of the lifetime such as "10%"."""
    if value is None:
        return DEFAULT_REFRESH_BEFORE
    if isinstance(value, str) and value.endswith("%"):
        if not re.fullmatch(r"\d{1,2}(\.\d+)?%", value):
            raise AuthConfigError(f"refresh_before: {value} must be a share from 0% to 99%")
        return value
    try:
        return seconds(value)
    except ValueError as exc:
        raise AuthConfigError(f"refresh_before: {exc}") from None


# -- signatures --------------------------------------------------------------------------------
class Signer:
    """Computes the configured signature of one request and the headers that carry it."""

    def __init__(self, config: Mapping[str, Any]):
        self._secret = config["secret"]
        self._app_key = str(config.get("app_key", ""))
        self._digest = ALGORITHMS[config.get("algorithm", "hmac-sha256")]
        self._keyed = config.get("algorithm", "hmac-sha256").startswith("hmac-")
        self._encoding = config.get("encoding", "hex")
        self._millis = config.get("timestamp", "s") == "ms"
        if "template" in config:
            self._template = config["template"]
        else:
            join = config.get("join", "\n").replace("{", "{{").replace("}", "}}")
            self._template = join.join("{" + part + "}" for part in config["parts"])
        self._headers = dict(config.get("headers") or {"X-Signature": "{signature}", "X-Timestamp": "{timestamp}",
                                                       "X-Nonce": "{nonce}"})
        _check_fields(self._template, SIGN_PARTS, "the string to sign")
        for name, value in self._headers.items():
            _check_fields(value, HEADER_FIELDS, f"the header '{name}'")

    def headers(self, method: str, target: str, body: bytes | None) -> dict[str, str]:
        now = time.time()
        values = {"timestamp": str(int(now * 1000) if self._millis else int(now)), "nonce": random.token_hex(16),
                  "app_key": self._app_key}
        values["signature"] = self.sign(self.canonical(method, target, body or b"", values))
        return {name: _fill(template, values) for name, template in self._headers.items()}

    def canonical(self, method: str, target: str, body: bytes, values: Mapping[str, str]) -> str:
        path, _, query = target.partition("?")
        parts = {"method": method.upper(), "path": path, "query": "&".join(sorted(query.split("&"))) if query else "",
                 "target": target, "body": body.decode("utf-8", "replace"),
                 "body_sha256": hashlib.sha256(body).hexdigest(), "body_md5": hashlib.md5(body).hexdigest(),
                 "secret": self._secret, **values}
        return _fill(self._template, parts)

    def sign(self, text: str) -> str:
        data = text.encode("utf-8")
        if self._keyed:
            raw = hmac.new(self._secret.encode("utf-8"), data, self._digest).digest()
        else:
            raw = hashlib.new(self._digest, data).digest()
        if self._encoding == "base64":
            return base64.b64encode(raw).decode("ascii")
        return raw.hex().upper() if self._encoding == "hex-upper" else raw.hex()


def _fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with each {field} replaced by its value, and {{ }} by { } (values are not re-read)."""
    return _TEMPLATE.sub(lambda m: values[m.group(1)] if m.group(1) else m.group(0)[0], template)


def _check_fields(template: str, allowed: tuple[str, ...], what: str) -> None:
    text = template.replace("{{", "").replace("}}", "")
    unknown = [f for f in re.findall(r"\{([^{}]*)\}", text) if f not in allowed]
    if unknown:
        raise AuthConfigError(f"{what} has the unknown field {{{unknown[0]}}} (known: {', '.join(allowed)})")
    rest = re.sub(r"\{[^{}]*\}", "", text)
    if "{" in rest or "}" in rest:
        raise AuthConfigError(f"{what} has a stray brace: write {{{{ or }}}} for a literal one")
