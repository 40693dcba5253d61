"""The operator's endpoint of `esb run`: /metrics (Prometheus), /healthz (alive), /readyz (ready).

One process serves it: the worker itself, or under `--workers N` the supervisor, which reads the
workers' values from PROMETHEUS_MULTIPROC_DIR. Served by prometheus_client's WSGI app on the
standard library's threading WSGI server, like prometheus_client's own `start_http_server`.
"""

from __future__ import annotations

import json
import os
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app, multiprocess

from esb.errors import ConfigError
from esb.observability import MULTIPROC_ENV
from esb.observability.health import readiness

log = structlog.get_logger("esb.metrics")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args) -> None:  # a scrape every 15 s is not news
        return None


def registry_to_serve() -> CollectorRegistry:
    """This process's metrics, or, under a supervisor, every worker's summed."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def app(registry: CollectorRegistry, workers: int):
    metrics = make_wsgi_app(registry)

    def route(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"alive": True})
        if path == "/readyz":
            ok, body = readiness(registry, workers)
            return _json(start_response, "200 OK" if ok else "503 Service Unavailable", body)
        if path in ("/metrics", "/"):
            return metrics(environ, start_response)
        return _json(start_response, "404 Not Found", {"error": "try /metrics, /healthz or /readyz"})
    return route


def _json(start_response, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def serve(listen: str, workers: int = 1) -> _ThreadingServer:
    """Serve the endpoint on `host:port` in a daemon thread; the server (its `server_address`
    says the port when `listen` asked for port 0)."""
    host, _, port = listen.rpartition(":")
    try:
        server = make_server(host or "127.0.0.1", int(port), app(registry_to_serve(), workers),
                             server_class=_ThreadingServer, handler_class=_QuietHandler)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"metrics.listen {listen!r}: cannot serve metrics there ({exc})") from None
    threading.Thread(target=server.serve_forever, name="esb-metrics", daemon=True).start()
    host, port = server.server_address[:2]
    address = f"{host}:{port}"
    log.info("metrics_serving", address=address, workers=workers,
             urls=[f"http://{address}{path}" for path in ("/metrics", "/healthz", "/readyz")])
    return server


def serve_unless_supervised(listen: str) -> _ThreadingServer | None:
    """A lone worker serves its own endpoint; under a supervisor the supervisor serves it."""
    return None if os.environ.get(MULTIPROC_ENV) else serve(listen)
