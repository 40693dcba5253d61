"""The webhook server: a WSGI app on cheroot (threaded; TLS by setting) that turns each accepted
request into a message on its route's queue and answers 202 only once the broker confirmed it.

Why threads: the runtime's broker hands back a thread-safe confirmation per publish, so a handler
publishes and waits on it (at most CONFIRM_TIMEOUT) — no event loop to bridge. The answers:
202 confirmed; 503 not confirmed (the sender should retry; with an idempotency header the retry is
the same message); 413 over the route's max_body, refused before the body is read; 401 failed
auth; 429 with Retry-After over the per-client rate; 400 a bad idempotency header; 404, 405.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog
from cheroot import wsgi

from esb.errors import ConfigError
from esb.inbound.auth import Refused, Verifier
from esb.inbound.ratelimit import RateLimiter
from esb.inbound.request import BadRequest, request_headers, to_outgoing
from esb.routes.model import Route

log = structlog.get_logger("esb.inbound")
CONFIRM_TIMEOUT = 5.0  # seconds a request waits for the broker's confirm before it is answered 503
_REASONS = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Content Too Large", 429: "Too Many Requests", 503: "Service Unavailable"}


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One route's webhook: where it publishes and how it checks requests."""

    route: Route
    verifier: Verifier
    limiter: RateLimiter | None
    max_body: int

    @classmethod
    def of(cls, route: Route, max_body: int) -> Endpoint:
        http = route.source.http
        try:
            verifier = Verifier(http.auth)
        except ValueError as exc:
            raise ConfigError(f"route {route.name}: source.http.auth: {exc}: export it before `esb run`",
                              path=route.path, line=route.line) from None
        limiter = RateLimiter(http.rate, http.burst) if http.rate else None
        return cls(route, verifier, limiter, route.body_limit(max_body))


class WebhookApp:
    """The WSGI application: POST to a route's path."""

    def __init__(self, endpoints: Iterable[Endpoint], broker, confirm_timeout: float = CONFIRM_TIMEOUT):
        self.endpoints = {e.route.source.http.path: e for e in endpoints}
        self.broker = broker
        self.confirm_timeout = confirm_timeout

    def __call__(self, environ, start_response):
        status, body, extra = self.handle(environ)
        payload = json.dumps(body).encode("utf-8")
        start_response(f"{status} {_REASONS.get(status, '')}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *extra])
        return [payload]

    def handle(self, environ) -> tuple[int, dict, list[tuple[str, str]]]:
        endpoint = self.endpoints.get(environ.get("PATH_INFO", ""))
        if endpoint is None:
            return 404, {"error": "no route is served at this path"}, []
        if environ.get("REQUEST_METHOD") != "POST":
            return 405, {"error": "webhooks are POSTed"}, [("Allow", "POST")]
        client = environ.get("REMOTE_ADDR", "")  # never X-Forwarded-For: any sender can write that
        wait = endpoint.limiter.take(client) if endpoint.limiter else 0.0
        if wait:
            return 429, {"error": "too many requests from this client"}, [("Retry-After", str(math.ceil(wait)))]
        body = _read_body(environ, endpoint.max_body)
        if isinstance(body, tuple):
            return body
        return self._accept(endpoint, request_headers(environ), body, client)

    def _accept(self, endpoint: Endpoint, headers: Mapping[str, str], body: bytes, client: str):
        route = endpoint.route
        try:
            token = endpoint.verifier.check(headers, body)
        except Refused as exc:
            log.warning("webhook_refused", route=route.name, client=client, reason=str(exc))
            bearer = route.source.http.auth.kind == "bearer"
            return 401, {"error": str(exc)}, [("WWW-Authenticate", "Bearer")] if bearer else []
        try:
            outgoing = to_outgoing(route.source.http, headers, body, route.source.format)
        except BadRequest as exc:
            endpoint.verifier.released(token)
            return 400, {"error": str(exc)}, []
        why = self._publish(route.source.queue, outgoing)
        if why is not None:
            endpoint.verifier.released(token)
            log.warning("webhook_not_confirmed", route=route.name, message_id=outgoing.message_id, reason=why)
            return 503, {"error": f"the message could not be queued ({why}); send it again"}, [("Retry-After", "5")]
        log.debug("webhook_accepted", route=route.name, message_id=outgoing.message_id)
        return 202, {"message_id": outgoing.message_id}, []

    def _publish(self, queue: str, outgoing) -> str | None:
        """None once the broker confirmed the message on `queue`, else why not."""
        try:
            confirmation = self.broker.publish("", queue, outgoing)  # the default exchange: straight to the queue
        except Exception as exc:  # noqa: BLE001 - a stopped or broken broker object: the sender retries
            return f"{type(exc).__name__}: {exc}"
        if not confirmation.wait(self.confirm_timeout):
            return f"no confirm from the broker within {self.confirm_timeout:g}s"
        error = confirmation.exception(0)
        return None if error is None else str(error)


def _read_body(environ, limit: int) -> bytes | tuple:
    """The body, read at most `limit` + 1 bytes; a (status, body, headers) answer when it is too large."""
    length = environ.get("CONTENT_LENGTH") or ""
    if length and not length.isdigit():
        return 400, {"error": "Content-Length is not a number"}, []
    if length and int(length) > limit:
        return _too_large(int(length), limit)
    body = environ["wsgi.input"].read(int(length) if length else limit + 1)  # chunked: read one byte past the limit
    return _too_large(len(body), limit) if len(body) > limit else body


def _too_large(size: int, limit: int) -> tuple:
    return 413, {"error": f"the body is {size:,} bytes or more, over the route's limit of {limit:,} (max_body)"}, []


class WebhookServer:
    """cheroot serving a WebhookApp on a thread of its own; `start` binds (a port in use is a ConfigError)."""

    def __init__(self, app: WebhookApp, listen: str, tls_cert: str = "", tls_key: str = "", threads: int = 32):
        host, _, port = listen.rpartition(":")
        self.server = wsgi.Server((host or "127.0.0.1", int(port)), app, numthreads=threads,
                                  server_name="esb")
        # no max_request_body_size: cheroot would answer 413 itself, in text; WebhookApp reads bounded
        if tls_cert or tls_key:
            from cheroot.ssl.builtin import BuiltinSSLAdapter
            self.server.ssl_adapter = BuiltinSSLAdapter(tls_cert, tls_key)
        self.listen = listen
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.server.bind_addr[:2]

    def start(self) -> None:
        try:
            self.server.prepare()
        except OSError as exc:
            raise ConfigError(f"http.listen {self.listen}: cannot serve webhooks there ({exc.strerror or exc})") \
                from None
        self._thread = threading.Thread(target=self.server.serve, name="esb-webhooks", daemon=True)
        self._thread.start()
        log.info("webhooks_serving", address="{}:{}".format(*self.address), routes=len(self.server.wsgi_app.endpoints),
                 tls=self.server.ssl_adapter is not None)

    def stop(self) -> None:
        self.server.stop()
        if self._thread is not None:
            self._thread.join(10)


def serve_webhooks(project, broker, routes: Iterable[str] | None = None) -> WebhookServer | None:
    """Serve the project's http routes (of `routes`, when given) with `broker`, or None when there
    are none. Their queues are declared first: a webhook may come before any worker consumes."""
    from esb.runtime.runtime import project_topology
    names = [n for n in (routes or project.routes) if project.routes[n].source.http is not None]
    if not names:
        return None
    settings = project.settings
    endpoints = [Endpoint.of(project.routes[n], settings.max_body_bytes) for n in names]
    paths = [e.route.source.http.path for e in endpoints]
    if len(set(paths)) < len(paths):
        twice = sorted({p for p in paths if paths.count(p) > 1})
        raise ConfigError(f"source.http.path {', '.join(twice)} is served by more than one route")
    broker.declare(project_topology(project, names))
    server = WebhookServer(WebhookApp(endpoints, broker), settings.http_listen,
                           _under(project.root, settings.http_tls_cert), _under(project.root, settings.http_tls_key),
                           settings.http_threads)
    server.start()
    return server


def _under(root, path: str) -> str:
    return str(Path(root) / path) if path else ""
