"""Webhooks in: requests/s of confirmed webhooks, esb's server (esb.inbound on cheroot, HMAC-checked,
202 after the broker's confirm) against a hand-written cheroot app publishing with pika confirms.

Both serve on loopback with the same thread count; the load comes from another process (so the
client does not share the servers' GIL): `clients` keep-alive connections POSTing signed claims.
"""

from __future__ import annotations

import multiprocessing
import threading
import time

import pika
from cheroot import wsgi

from bench import common

THREADS = 32
CLIENTS = 32
SECRET = "bench-webhook-secret"


def _load(url: str, bodies: list[bytes], headers: list[dict], clients: int, out) -> None:
    """POST every body with `clients` threads; put (seconds, statuses) on `out`."""
    import requests
    statuses: list[int] = []
    lock = threading.Lock()
    work = iter(range(len(bodies)))

    def client():
        session = requests.Session()
        for i in work:
            for _ in range(3):  # a sender re-sends on a reset connection (same Idempotency-Key: one message)
                try:
                    status = session.post(url, data=bodies[i], headers=headers[i], timeout=30).status_code
                    break
                except requests.ConnectionError:
                    status, session = -1, requests.Session()  # -1: no answer at all
            with lock:
                statuses.append(status)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((time.perf_counter() - started, statuses))


def _drive(address: tuple[str, int], path: str, count: int, clients: int) -> float:
    """Requests per second confirmed (every answer must be 202)."""
    from esb.inbound.auth import sign
    stamp = str(int(time.time()))
    bodies = [common.expense_body(i) for i in range(count)]
    headers = [{"Content-Type": "application/json", "X-Timestamp": stamp, "X-Signature": sign(SECRET, stamp, b),
                "Idempotency-Key": f"bench-{i}"} for i, b in enumerate(bodies)]
    out = multiprocessing.get_context("fork").Queue()
    process = multiprocessing.get_context("fork").Process(
        target=_load, args=(f"http://{address[0]}:{address[1]}{path}", bodies, headers, clients, out))
    process.start()
    seconds, statuses = out.get(timeout=600)
    process.join()
    wrong = [s for s in statuses if s != 202]
    if wrong:
        raise RuntimeError(f"{len(wrong)} of {len(statuses)} answers were not 202 (first: {wrong[0]})")
    return count / seconds


def esb_rate(url: str, count: int, clients: int = CLIENTS) -> float:
    from esb.cli.main import configure_logging
    from esb.inbound.http import serve_webhooks
    from esb.loading.project import load_project
    from esb.runtime.connect import make_broker
    from esb.runtime.runtime import project_topology
    name = f"bench-hook-{common.uid()}"
    root = common.write_project({
        "config/esb.yaml": f"broker: {{url: '{url}', queues: classic}}\nhttp: {{listen: '127.0.0.1:0', "
                           f"threads: {THREADS}}}\n",
        f"routes/{name}.yaml": f"name: {name}\nsource:\n  http:\n    path: /hooks/bench\n"
                               f"    auth: {{hmac: {{secret_env: BENCH_HOOK_SECRET}}}}\n"
                               f"steps:\n  - log: {{message: taken}}\n"}, "webhook")
    project = load_project(root, {"BENCH_HOOK_SECRET": SECRET})
    configure_logging("warning")  # as `esb run` logs by default: not a debug line per request into the bench's output
    broker = make_broker(url)
    broker.start()
    admin = common.Admin(url)
    try:
        server = serve_webhooks(project, broker)
        admin.queues += [q.name for q in project_topology(project, [name]).queues]  # deleted by cleanup
        try:
            return _drive(server.address, "/hooks/bench", count, clients)
        finally:
            server.stop()
    finally:
        broker.stop()
        admin.cleanup()


class _Baseline:
    """The hand-written reference: read the body, publish it persistent with a confirm on this
    thread's own pika connection, answer 202."""

    def __init__(self, url: str, queue: str):
        self.url, self.queue = url, queue
        self.local = threading.local()
        self.connections: list = []

    def channel(self):
        channel = getattr(self.local, "channel", None)
        if channel is None:
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
            self.connections.append(connection)
            channel = self.local.channel = connection.channel()
            channel.confirm_delivery()
        return channel

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.channel().basic_publish("", self.queue, body, pika.BasicProperties(
            delivery_mode=2, content_type="application/json",
            message_id=environ.get("HTTP_IDEMPOTENCY_KEY")), mandatory=True)
        start_response("202 Accepted", [("Content-Length", "2")])
        return [b"{}"]


def baseline_rate(url: str, count: int, clients: int = CLIENTS) -> float:
    queue = f"bench-hook-base-{common.uid()}"
    admin = common.Admin(url)
    admin.queue(queue)
    app = _Baseline(url, queue)
    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=THREADS)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        return _drive(server.bind_addr[:2], "/hooks/bench", count, clients)
    finally:
        server.stop()
        for connection in app.connections:
            connection.close()  # closing from another thread once the server stopped: nothing else uses them
        admin.cleanup()
