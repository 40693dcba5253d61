"""KombuBroker: the embedded default (`memory://`) and any other kombu transport.

One I/O thread owns the consuming connection; publishing uses a connection of its own, as
kombu's ConsumerProducerMixin does (one py-amqp connection for both re-entered the consumer
callback and crashed with a RecursionError). Transports lack RabbitMQ's queue TTL and
dead-lettering, so this class runs retry tiers itself: a message sent to a tier queue is
held for the tier's delay, then delivered to the route queue. Those timers live in memory:
with `memory://` everything does. The CLI's one-off operations run on the I/O thread too;
kombu's memory transport does not restore unacked messages when a channel closes
(`do_restore = False`), so messages fetched by `get` are requeued explicitly, at the tail.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import threading
import time
from collections.abc import Callable

import kombu
import structlog

from esb.errors import TransientError, unroutable
from esb.runtime.broker import Confirmation, Delivery, OnDelivery, Outgoing, QueueSpec, Topology
from esb.runtime.urls import mask_url, without_password

log = structlog.get_logger("esb.broker")
POLL = 0.005


class KombuBroker:
    def __init__(self, url: str = "memory://"):
        self.url = url
        options = {"polling_interval": POLL}
        self._consuming = kombu.Connection(url, transport_options=options)
        self._producing = kombu.Connection(url, transport_options=options)
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._timers: list = []
        self._order = itertools.count()
        self._tiers: dict[str, QueueSpec] = {}
        self._consumers: dict[str, kombu.Consumer] = {}
        self._fetched: list[kombu.Message] = []  # held by `get`, in the order fetched
        self._reader = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="esb-broker-io", daemon=True)

    def start(self) -> None:
        try:
            self._consuming.connect()
            self._producing.connect()
        except (*self._consuming.connection_errors, OSError) as exc:
            self._consuming.release()
            self._producing.release()
            raise TransientError(f"cannot connect to {mask_url(self.url)}: {without_password(repr(exc), self.url)}"
                                 ) from None
        self._channel = self._consuming.channel()
        self._producer = kombu.Producer(self._producing.channel())
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._give_back_fetched()
        self._consuming.release()
        self._producing.release()

    def health(self) -> dict:
        """Whether the broker's thread runs and which queues have a consumer."""
        connected = self._thread.is_alive() and not self._stopping.is_set()
        return {"connected": connected, "consumers": {q: connected for q in list(self._consumers)}}

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._drain_commands()
            self._fire_timers()
            try:
                self._consuming.drain_events(timeout=POLL)
            except TimeoutError:
                pass
            except Exception as exc:  # noqa: BLE001 - keep the loop alive; report it
                log.error("broker_loop_error", error=str(exc))
                time.sleep(POLL)
        self._drain_commands()

    def _submit(self, command: Callable[[], None]) -> Confirmation:
        future = Confirmation()

        def run():
            try:
                future.set_result(command())
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(exc)
        if threading.current_thread() is self._thread:
            run()
        else:
            self._commands.append(run)
        return future

    def _drain_commands(self) -> None:
        while self._commands:
            self._commands.popleft()()

    # -- topology --------------------------------------------------------------------------

    def declare(self, topology: Topology) -> None:
        channel = self._producing.default_channel
        for name, kind in topology.exchanges:
            kombu.Exchange(name, kind, durable=True)(channel).declare()
        for queue in topology.queues:
            kombu.Queue(queue.name, durable=True, channel=channel).declare()
            if queue.ttl_ms is not None:
                self._tiers[queue.name] = queue
        for binding in topology.bindings:
            channel.queue_bind(binding.queue, binding.exchange, binding.routing_key)

    # -- publish ---------------------------------------------------------------------------

    def publish(self, exchange: str, routing_key: str, message: Outgoing) -> Confirmation:
        return self._submit(lambda: self._publish(exchange, routing_key, message))

    def _publish(self, exchange: str, routing_key: str, message: Outgoing) -> None:
        if not exchange and routing_key in self._tiers:
            tier = self._tiers[routing_key]
            due = time.monotonic() + tier.ttl_ms / 1000
            heapq.heappush(self._timers, (due, next(self._order), tier.dead_letter_to, message))
            return
        if not self._routable(exchange, routing_key):
            raise unroutable(exchange, routing_key)
        self._producer.publish(message.body, exchange=exchange, routing_key=routing_key,
                               headers=dict(message.headers), content_type=message.content_type,
                               content_encoding="binary", delivery_mode=2, message_id=message.message_id)

    def _routable(self, exchange: str, routing_key: str) -> bool:
        channel = self._producer.channel
        if not exchange:
            return channel._has_queue(routing_key)
        try:
            return bool(channel.typeof(exchange).lookup(channel.get_table(exchange), exchange, routing_key, None))
        except KeyError:
            return False

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, queue, message = heapq.heappop(self._timers)
            self._publish("", queue, message)

    # -- consume, ack, reject --------------------------------------------------------------

    def consume(self, queue: str, prefetch: int, on_delivery: OnDelivery) -> None:
        def subscribe():
            def on_message(raw):
                on_delivery(Delivery(raw.body, raw.content_type, raw.headers or {},
                                     raw.properties.get("message_id"), queue,
                                     bool(raw.delivery_info.get("redelivered")), raw))
            channel = self._consuming.channel()
            channel.basic_qos(0, prefetch, False)
            consumer = kombu.Consumer(channel, [kombu.Queue(queue, channel=channel)], on_message=on_message,
                                      accept=None, no_ack=False)
            consumer.consume()
            self._consumers[queue] = consumer
        self._submit(subscribe).result(10)

    def cancel(self, queue: str) -> None:
        consumer = self._consumers.pop(queue, None)
        if consumer is not None:
            self._submit(consumer.cancel).result(10)

    def ack(self, delivery: Delivery) -> None:
        self._submit(delivery.tag.ack)

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        self._submit(lambda: delivery.tag.reject(requeue=requeue))

    # -- inspection ------------------------------------------------------------------------

    def queue_depth(self, queue: str) -> tuple[int, int] | None:
        def depth():
            channel = self._producing.default_channel
            if not channel._has_queue(queue):
                return None
            return channel._size(queue), int(queue in self._consumers)
        return self._submit(depth).result(10)

    # -- one-off reads for the CLI ------------------------------------------------------------

    def get(self, queue: str) -> Delivery | None:
        def fetch():
            if self._reader is None:
                self._reader = self._producing.channel()
            message = kombu.Queue(queue, channel=self._reader).get(no_ack=False, accept=None)
            if message is None:
                return None
            self._fetched.append(message)
            return Delivery(message.body, message.content_type, message.headers or {},
                            message.properties.get("message_id"), queue,
                            bool(message.delivery_info.get("redelivered")), message)
        return self._submit(fetch).result(10)

    def give_back_fetched(self) -> None:
        self._submit(self._give_back_fetched).result(10)

    def _give_back_fetched(self) -> None:
        fetched, self._fetched = self._fetched, []
        for message in fetched:
            if not message.acknowledged:
                message.requeue()

    def purge(self, queue: str) -> int:
        return self._submit(lambda: self._producing.default_channel.queue_purge(queue) or 0).result(10)
