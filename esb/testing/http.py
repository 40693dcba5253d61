"""A scriptable HTTP endpoint on loopback for tests, benchmarks and `esb demo`.

    server = StubHttpServer().start()
    server.enqueue("/vouchers", 201, {"voucher_no": "V-1"})       # served once, in order
    server.route("/health", lambda request: StubResponse(200, "ok"))  # served every time
    ...  # point an adapter at server.url
    server.requests[0].headers["Idempotency-Key"]
    server.stop()

A path is matched as it arrives on the wire (percent-encoded, without the query string).
Queued responses for a path are served first, then the path's route, then the default
(`set_default`); with none of these the server answers 404 with a JSON body saying so.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from esb.transform import jsoncodec

_NO_BODY_STATUSES = {204, 304}


class Headers(Mapping[str, str]):
    """Request headers, looked up without regard to case; the last value of a repeated header wins."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self._items = {name.lower(): (name, value) for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as it arrived."""

    method: str
    path: str       # percent-encoded, as on the wire, without the query
    query: str      # the raw query string ("" when there is none)
    headers: Headers
    body: bytes
    received_at: float = dataclasses.field(default_factory=time.monotonic)  # to check waits between tries

    @property
    def target(self) -> str:
        """The request target as sent: path, then `?query` when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def json(self) -> Any:
        return jsoncodec.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclasses.dataclass(frozen=True)
class StubResponse:
    """What to answer: a status, a body (bytes, str, or a JSON value), headers and a delay in seconds."""

    status: int = 200
    body: Any = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode("utf-8"), headers
        headers.setdefault("Content-Type", "application/json")
        return jsoncodec.dumps(self.body).encode("utf-8"), headers


Handler = Callable[[RecordedRequest], StubResponse]


class StubHttpServer:
    """An HTTP/1.1 server on 127.0.0.1 (a free port) in a background thread, answering what it is told."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None):
        self._address = (host, port)
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._queues: dict[str, deque[StubResponse]] = defaultdict(deque)
        self._routes: dict[str, Handler] = {}
        self._default: Handler = _not_found
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> StubHttpServer:
        self._server = _Server(self._address, _RequestHandler, self)
        if self._ssl_context is not None:  # the handshake runs on accept; a refused one is dropped
            self._server.socket = self._ssl_context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"stub-http-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, end delayed answers, and wait for the threads."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server.join_handlers(timeout=5)
        self._server = None

    def __enter__(self) -> StubHttpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` (https with an ssl_context), with no trailing slash."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._address[0]}:{self.port}"

    # -- scripting -------------------------------------------------------------------------
    def enqueue(self, path: str, status: int = 200, body: Any = b"", headers: Mapping[str, str] | None = None,
                delay: float = 0.0) -> None:
        """Answer the next request for `path` with this response (once; queued responses go in order)."""
        with self._lock:
            self._queues[path].append(StubResponse(status, body, dict(headers or {}), delay))

    def route(self, path: str, handler: Handler) -> None:
        """Answer every request for `path` (once its queue is empty) with `handler(request)`."""
        with self._lock:
            self._routes[path] = handler

    def set_default(self, response: StubResponse | Handler) -> None:
        """Answer every request that no queue or route matches with this response (or handler)."""
        with self._lock:
            self._default = response if callable(response) else lambda request: response

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    # -- called by the handler threads -----------------------------------------------------
    def _answer(self, request: RecordedRequest) -> StubResponse:
        with self._lock:
            self._requests.append(request)
            queue = self._queues.get(request.path)
            if queue:
                return queue.popleft()
            handler = self._routes.get(request.path, self._default)
        return handler(request)

    def _pause(self, seconds: float) -> bool:
        """Sleep for a response's delay; False when the server stopped meanwhile."""
        return not self._stopping.wait(seconds) if seconds > 0 else True


def _not_found(request: RecordedRequest) -> StubResponse:
    return StubResponse(404, {"error": f"the stub server has no response for {request.path}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, stub: StubHttpServer):
        self.stub = stub
        self._open: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._guard = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self._guard:
            self._open.add(request)
            self._handlers.add(thread)
        thread.start()

    def shutdown_request(self, request: socket.socket) -> None:
        with self._guard:
            self._open.discard(request)
            self._handlers.discard(threading.current_thread())
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on a kept-alive connection, so they finish and close it."""
        with self._guard:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client

    def join_handlers(self, timeout: float) -> None:
        with self._guard:
            threads = list(self._handlers)
        for thread in threads:
            thread.join(timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (a timeout test) is expected; nothing to report


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do, so clients' pools are exercised
    disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle + delayed ACK cost 40 ms
    server: _Server

    def do_request(self) -> None:
        path, _, query = self.path.partition("?")
        request = RecordedRequest(self.command, path, query, Headers(list(self.headers.items())), self._body())
        response = self.server.stub._answer(request)
        if not self.server.stub._pause(response.delay):
            self.close_connection = True
            return
        body, headers = response.encoded()
        self.send_response(response.status)
        for name, value in headers.items():
            self.send_header(name, value)
        if response.status not in _NO_BODY_STATUSES:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if response.status not in _NO_BODY_STATUSES and self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_request

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked_body()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _chunked_body(self) -> bytes:
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read server.requests instead of stderr
