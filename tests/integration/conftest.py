"""Fixtures for the bus: a real RabbitMQ (or the embedded broker), projects, a stub ledger."""

from __future__ import annotations

import socket
import uuid

import pytest
from integration_helpers import Bus, delete_queues, write_project

from esb.loading.project import load_project
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


@pytest.fixture
def ledger():
    with StubHttpServer() as server:
        yield server


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
