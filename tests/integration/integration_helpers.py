"""What the integration tests share besides fixtures: a test's view of a broker, project files,
dead letters. A module of its own (not conftest) so that test files import it by a name no other
folder's conftest can shadow."""

from __future__ import annotations

import textwrap
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pika

from esb.runtime.broker import Binding, Outgoing, QueueSpec, Topology
from esb.runtime.connect import make_broker
from esb.runtime.runtime import Runtime


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


def dead_letters(bus: Bus, runtime: Runtime, route: str, count: int, timeout: float = 15.0) -> list:
    """The route's dead letters, left in place, once there are `count` of them (or the time is up)."""
    from esb.runtime import dlq
    deadline = time.monotonic() + timeout
    while True:
        letters = dlq.browse(bus.broker, route, seal=runtime.seal)
        if len(letters) >= count or time.monotonic() > deadline:
            return letters
        time.sleep(0.1)


def write_project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def wait_until(condition, timeout: float, what: str, every: float = 0.1):
    """What `condition()` gives once it is truthy; an AssertionError saying `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(every)


def queue_counts(url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of `queue` on RabbitMQ; (0, 0) while nobody has declared it yet."""
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        try:
            method = connection.channel().queue_declare(queue, passive=True).method
        except pika.exceptions.ChannelClosedByBroker:
            return 0, 0
        return method.message_count, method.consumer_count


def consumers(url: str, queue: str) -> int:
    return queue_counts(url, queue)[1]
