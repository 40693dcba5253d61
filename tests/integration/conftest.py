"""Fixtures for the bus: a real RabbitMQ (or the embedded broker), projects, a stub ledger."""

from __future__ import annotations

import socket
import textwrap
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pika
import pytest

from esb.loading.project import load_project
from esb.runtime.broker import Binding, Outgoing, QueueSpec, Topology
from esb.runtime.connect import make_broker
from esb.runtime.runtime import Runtime
from esb.testing.http import StubHttpServer
from esb.testing.ledger import StandInLedger

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def rabbit_is_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    if not rabbit_is_up():
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672: start it with `rabbitmq-server -detached` "
                    "(or run `make test`, which does)", pytrace=False)
    return RABBIT_URL


class Bus:
    """A test's view of a broker: declare a listening queue, send, and collect what arrives."""

    def __init__(self, url: str):
        self.url = url
        self.broker = make_broker(url)
        self.broker.start()
        self.received: dict[str, list] = defaultdict(list)
        self.arrived = threading.Condition()
        self.queues: set[str] = set()

    def listen(self, queue: str, exchange: str | None = None, key: str = "#") -> None:
        bindings = (Binding(queue, exchange, key),) if exchange else ()
        exchanges = ((exchange, "topic"),) if exchange else ()
        self.broker.declare(Topology(exchanges, (QueueSpec(queue),), bindings))
        self.queues.add(queue)

        def collect(delivery):
            with self.arrived:
                self.received[queue].append(delivery)
                self.arrived.notify_all()
            self.broker.ack(delivery)
        self.broker.consume(queue, 100, collect)

    def send(self, exchange: str, key: str, body: bytes, *, content_type: str = "application/json",
             message_id: str | None = None, headers: dict | None = None) -> str:
        message_id = message_id or uuid.uuid4().hex
        self.broker.publish(exchange, key, Outgoing(body, content_type, headers or {}, message_id)).result(10)
        return message_id

    def wait_for(self, queue: str, count: int, timeout: float = 15.0) -> list:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received[queue]) >= count, timeout)
            return list(self.received[queue])

    def settle(self, seconds: float = 0.5) -> None:
        """Give late duplicates a chance to show up before counting."""
        time.sleep(seconds)

    def close(self) -> None:
        self.broker.stop()


def delete_queues(url: str, prefix: str) -> None:
    """Remove every queue a test created (names carry the test's uuid)."""
    if not url.startswith("amqp"):
        return
    import subprocess
    names = subprocess.run(["rabbitmqctl", "list_queues", "-q", "name"], capture_output=True, text=True,
                           timeout=60).stdout.split()
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        channel = connection.channel()
        for name in names:
            if prefix in name:
                channel.queue_delete(name)


@pytest.fixture(params=["memory", "rabbit"])
def broker_url(request) -> str:
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("rabbit_url")


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]


def _bus(url: str, uid: str):
    bus = Bus(url)
    yield bus
    bus.close()
    delete_queues(url, uid)


@pytest.fixture
def bus(broker_url, uid):
    """A Bus on each broker in turn (the embedded one and RabbitMQ)."""
    yield from _bus(broker_url, uid)


@pytest.fixture
def stand_in():
    """The stand-in ledger: recognises repeats by Idempotency-Key, honours DELETE."""
    with StandInLedger() as ledger:
        yield ledger


def dead_letters(bus: Bus, runtime: Runtime, route: str, count: int, timeout: float = 15.0) -> list:
    """The route's dead letters, left in place, once there are `count` of them (or the time is up)."""
    from esb.runtime import dlq
    deadline = time.monotonic() + timeout
    while True:
        letters = dlq.browse(bus.broker, route, seal=runtime.seal)
        if len(letters) >= count or time.monotonic() > deadline:
            return letters
        time.sleep(0.1)


@pytest.fixture
def ledger():
    with StubHttpServer() as server:
        yield server


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def rabbit_bus(rabbit_url, uid):
    yield from _bus(rabbit_url, uid)


@pytest.fixture
def run_routes_on_rabbit(rabbit_url, tmp_path, uid):
    yield from _runtimes(rabbit_url, tmp_path)
    delete_queues(rabbit_url, uid)


@pytest.fixture
def run_routes(broker_url, tmp_path):
    """Start a Runtime on the project in tmp_path; stopped (drained) at the end of the test."""
    yield from _runtimes(broker_url, tmp_path)


def _runtimes(broker_url, tmp_path):
    started = []

    def start(files: dict[str, str], store: bool = True) -> Runtime:
        project = load_project(write_project(tmp_path, files), {})
        from esb.store import SqliteStore
        runtime = Runtime(project, make_broker(broker_url),
                          store=SqliteStore(str(tmp_path / "idem.sqlite3")) if store else None)
        runtime.start()
        started.append(runtime)
        return runtime
    yield start
    for runtime in started:
        runtime.stop(drain_timeout=10)
