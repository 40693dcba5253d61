"""RabbitBroker: pika's asynchronous connection on its own I/O thread, pipelined confirms.

Worker threads never touch pika objects: they queue commands that the I/O thread runs.
Every publish gets a Confirmation that completes when the broker acks it (pipelined: many are
in flight at once); a mandatory publish the broker returns fails it as Unroutable.
When the connection drops, pending confirms fail (their sources stay unacked and come back),
acks of deliveries from the old connection are dropped, and the broker reconnects and
re-subscribes. A cluster is a list of nodes' URLs: esb connects to the first, and each later
attempt goes to the next node in turn (after a lost connection, the node after the lost one; after a
round of failed attempts, the reconnect delay). Declarations use a short-lived blocking connection;
the CLI's one-off operations (depth, get, give back, purge) one blocking connection held until
`stop`, used under a lock.
A fetched message goes back to its place when its channel closes: RabbitMQ requeues what a
closed channel held unacked (never a reject: see Broker.give_back_fetched).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
import structlog
from pika.adapters.select_connection import IOLoop

from esb.errors import ConfigError, NotConfirmed, TransientError, Unroutable, unroutable
from esb.runtime.broker import (
    Confirmation,
    Delivery,
    OnDelivery,
    Outgoing,
    QueueSpec,
    Topology,
)
from esb.runtime.urls import mask_url, split_urls, without_password

log = structlog.get_logger("esb.broker")
RECONNECT_DELAY = 1.0
GIVE_BACK_WAIT = 5.0  # at most, for given-back messages to be ready again


class RabbitBroker:
    def __init__(self, url: str, *, heartbeat: int = 30, connect_timeout: float = 15.0,
                 connection_name: str | None = None):
        self.url = url  # one node's URL, or several joined by commas (a cluster)
        self._urls = split_urls(url)
        # RabbitMQ shows the name in its connection list: an operator sees which machine and process it is
        name = connection_name or f"esb {socket.gethostname()} pid {os.getpid()}"
        self._nodes = [_parameters(one, heartbeat, name) for one in self._urls]
        self._node = 0  # the node connected to, or tried next
        self._failed_in_row = 0
        self.connect_timeout = connect_timeout
        self._ioloop = IOLoop()
        self._thread = threading.Thread(target=self._ioloop.start, name="esb-broker-io", daemon=True)
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._wake_pending = False
        self._connection: pika.SelectConnection | None = None
        self._publisher: pika.channel.Channel | None = None
        self._connected = threading.Event()
        self._closing = False
        self._generation = 0
        self._consumers: dict[str, tuple[int, OnDelivery]] = {}
        self._consumer_channels: dict[str, pika.channel.Channel] = {}
        self._retired: set[str] = set()  # queues whose consumer was cancelled on a channel still open
        self._pending: dict[int, tuple[Confirmation, str]] = {}   # publish seq -> (confirmation, message id)
        self._returned: dict[int, Unroutable] = {}   # publish seq -> why the broker returned it
        self._seq = itertools.count(1)
        self._last_error = ""
        self._outstanding: dict = {}   # consumer channel -> delivery tags not yet settled
        self._to_ack: dict = {}        # consumer channel -> settled tags whose ack is not yet sent
        self._flush_scheduled = False
        self._oneoff_lock = threading.RLock()
        self._oneoff: pika.BlockingConnection | None = None
        self._reader: Any = None  # the channel fetched messages are held on
        self._held_tags: dict[int, str] = {}  # delivery tag on the reader -> queue, until acked or given back

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._ioloop.add_callback_threadsafe(self._connect)
        if not self._connected.wait(self.connect_timeout):
            self.stop()
            raise TransientError(f"cannot connect to RabbitMQ at {mask_url(self.url)}: "
                                 f"{self._last_error or 'timed out'}")

    def stop(self) -> None:
        self._closing = True
        done = threading.Event()

        def close():
            if self._connection is not None and self._connection.is_open:
                self._connection.close()
            else:
                self._ioloop.stop()
            done.set()
        if self._thread.is_alive():
            self._ioloop.add_callback_threadsafe(close)
            done.wait(5)
            self._thread.join(5)
        if not self._thread.is_alive():
            self._ioloop.close()  # its wake-up socket pair
        with self._oneoff_lock:
            with contextlib.suppress(pika.exceptions.AMQPError, TransientError):
                self.give_back_fetched()  # a connection that died gave back what it held already
            oneoff, self._oneoff, self._reader = self._oneoff, None, None
            if oneoff is not None and oneoff.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError):
                    oneoff.close()

    # -- commands from any thread ---------------------------------------------------------

    def health(self) -> dict:
        """Whether the connection is up and which consumed queues have an open consumer channel
        (read from the I/O thread's state without a lock: a snapshot, good enough for a probe)."""
        connection = self._connection
        connected = bool(connection is not None and connection.is_open and self._publisher is not None)
        channels = dict(self._consumer_channels)
        return {"connected": connected,
                "consumers": {q: connected and channels.get(q) is not None and channels[q].is_open
                              for q in list(self._consumers)}}

    def _submit(self, command: Callable[[], None]) -> None:
        if threading.current_thread() is self._thread:  # e.g. an ack from a confirm callback
            command()
            return
        self._commands.append(command)
        if not self._wake_pending:  # one wake-up per batch of commands, not one per command
            self._wake_pending = True
            self._ioloop.add_callback_threadsafe(self._drain)

    def _drain(self) -> None:
        self._wake_pending = False
        commands = self._commands
        while commands:
            commands.popleft()()

    def publish(self, exchange: str, routing_key: str, message: Outgoing) -> Confirmation:
        future = Confirmation()
        properties = pika.BasicProperties(delivery_mode=2, content_type=message.content_type,
                                          headers=dict(message.headers), message_id=message.message_id)
        self._submit(lambda: self._publish(exchange, routing_key, message, properties, future))
        return future

    def ack(self, delivery: Delivery) -> None:
        if type(delivery.tag) is _Fetched:
            self._settle_fetched(delivery.tag, lambda ch, tag: ch.basic_ack(tag))
            return
        self._submit(lambda: self._settle(delivery, self._ack_later))

    def reject(self, delivery: Delivery, requeue: bool) -> None:
        if type(delivery.tag) is _Fetched:
            self._settle_fetched(delivery.tag, lambda ch, tag: ch.basic_reject(tag, requeue=requeue))
            return
        self._submit(lambda: self._settle(delivery, lambda ch, tag: ch.basic_reject(tag, requeue=requeue)))

    def consume(self, queue: str, prefetch: int, on_delivery: OnDelivery) -> None:
        self._consumers[queue] = (prefetch, on_delivery)
        self._submit(lambda: self._subscribe(queue))

    def cancel(self, queue: str) -> None:
        """Stop taking new deliveries from `queue` (in-flight ones may still be acked). A later
        `consume` of the queue (a route swapped by a reload) opens a channel of its own and closes
        this one: whatever it still held unacked goes back to the queue."""
        self._consumers.pop(queue, None)
        self._submit(lambda: self._unsubscribe(queue))

    # -- on the I/O thread ----------------------------------------------------------------

    def _connect(self) -> None:
        if self._closing:
            self._ioloop.stop()
            return
        self._connection = pika.SelectConnection(
            self._nodes[self._node], on_open_callback=self._on_open, on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed, custom_ioloop=self._ioloop)

    def _on_open(self, connection) -> None:
        self._generation += 1
        self._failed_in_row = 0
        connection.channel(on_open_callback=self._on_publisher_open)

    def _on_publisher_open(self, channel) -> None:
        channel.add_on_return_callback(self._on_return)
        channel.add_on_close_callback(self._on_publisher_closed)
        channel.confirm_delivery(self._on_confirm, callback=lambda _: self._ready(channel))

    def _ready(self, channel) -> None:
        self._publisher = channel
        for queue in list(self._consumers):
            self._subscribe(queue)
        self._connected.set()
        log.info("broker_connected", broker=self._where(), node=f"{self._node + 1}/{len(self._nodes)}",
                 generation=self._generation)

    def _on_open_error(self, _connection, error) -> None:
        self._last_error = without_password(str(error) or type(error).__name__, self.url)
        log.warning("broker_connect_failed", broker=self._where(), error=self._last_error)
        self._failed_in_row += 1
        self._node = (self._node + 1) % len(self._nodes)
        # the next node at once; the reconnect delay only once every node has failed in a row
        self._reconnect_later(0.0 if self._failed_in_row % len(self._nodes) else RECONNECT_DELAY)

    def _on_closed(self, _connection, reason) -> None:
        self._publisher = None
        self._consumer_channels.clear()
        self._outstanding.clear()
        self._to_ack.clear()
        self._fail_pending(f"the connection closed before the confirm ({reason})")
        if self._closing:
            self._ioloop.stop()
            return
        log.warning("broker_connection_lost", broker=self._where(), reason=without_password(str(reason), self.url))
        self._node = (self._node + 1) % len(self._nodes)  # its node may be the one that went away
        self._reconnect_later(RECONNECT_DELAY)

    def _reconnect_later(self, delay: float) -> None:
        if self._closing:
            self._ioloop.stop()
        else:
            self._ioloop.call_later(delay, self._connect)

    def _on_publisher_closed(self, channel, reason) -> None:
        if self._publisher is channel:
            self._publisher = None
        self._fail_pending(f"the publishing channel closed ({reason})")
        if self._connection is not None and self._connection.is_open and not self._closing:
            log.warning("broker_channel_closed", reason=str(reason))
            self._connection.channel(on_open_callback=self._on_publisher_open)

    def _publish(self, exchange, routing_key, message: Outgoing, properties, future: Confirmation) -> None:
        channel = self._publisher
        if channel is None or not channel.is_open:
            future.set_exception(NotConfirmed("not connected to RabbitMQ"))
            return
        seq = next(self._seq)
        self._pending[seq] = (future, message.message_id)
        try:
            channel.basic_publish(exchange, routing_key, message.body, properties, mandatory=True)
        except (pika.exceptions.AMQPError, ValueError, TypeError) as exc:
            del self._pending[seq]
            future.set_exception(NotConfirmed(f"publish failed: {exc}"))

    def _on_return(self, _channel, method, properties, _body) -> None:
        # The broker sends basic.return before the ack of the same message, in publish order.
        for seq, (_, message_id) in self._pending.items():
            if message_id == properties.message_id and seq not in self._returned:
                self._returned[seq] = unroutable(method.exchange, method.routing_key)
                return

    def _on_confirm(self, frame) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        # _pending is in publish order, so a `multiple` confirm takes tags from its front
        tags = list(itertools.takewhile(lambda t: t <= method.delivery_tag, self._pending)) \
            if method.multiple else [method.delivery_tag]
        for tag in tags:
            entry = self._pending.pop(tag, None)
            if entry is None:
                continue
            future = entry[0]
            returned = self._returned.pop(tag, None)
            if returned is not None:
                future.set_exception(returned)
            elif acked:
                future.set_result(None)
            else:
                future.set_exception(NotConfirmed("the broker refused the message (nack)"))

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        self._returned.clear()
        self._seq = itertools.count(1)
        for future, _ in pending.values():
            future.set_exception(NotConfirmed(why))

    def _subscribe(self, queue: str) -> None:
        if queue in self._retired:
            self._retired.discard(queue)
            channel = self._consumer_channels.pop(queue, None)
            if channel is not None and channel.is_open:
                channel.close()
        if (self._connection is None or not self._connection.is_open or queue in self._consumer_channels
                or queue not in self._consumers):  # cancelled while a resubscribe was waiting
            return
        prefetch, on_delivery = self._consumers[queue]
        generation = self._generation

        def on_message(channel, method, properties, body):
            self._outstanding.setdefault(channel, set()).add(method.delivery_tag)
            on_delivery(Delivery(body, properties.content_type, properties.headers or {}, properties.message_id,
                                 queue, method.redelivered, (channel, generation, method.delivery_tag)))

        def on_open(channel):
            if queue not in self._consumers:  # cancelled while its channel was opening: consume nothing
                if queue in self._consumer_channels and self._consumer_channels[queue] is None:
                    del self._consumer_channels[queue]
                channel.close()
                return
            self._consumer_channels[queue] = channel
            channel.add_on_close_callback(lambda ch, reason: self._on_consumer_closed(queue, ch, reason))
            channel.basic_qos(prefetch_count=prefetch,
                              callback=lambda _: channel.basic_consume(queue, on_message, consumer_tag=f"esb-{queue}"))
        self._consumer_channels[queue] = None  # opening
        self._connection.channel(on_open_callback=on_open)

    def _unsubscribe(self, queue: str) -> None:
        channel = self._consumer_channels.get(queue)
        if channel is not None and channel.is_open:
            channel.basic_cancel(f"esb-{queue}")
            self._retired.add(queue)

    def _on_consumer_closed(self, queue, channel, reason) -> None:
        self._outstanding.pop(channel, None)
        self._to_ack.pop(channel, None)
        if self._consumer_channels.get(queue) is channel:
            del self._consumer_channels[queue]
        if self._connection is not None and self._connection.is_open and queue in self._consumers:
            log.warning("broker_consumer_closed", queue=queue, reason=str(reason))
            self._ioloop.call_later(RECONNECT_DELAY, lambda: self._subscribe(queue))

    def _settle(self, delivery: Delivery, action) -> None:
        channel, generation, tag = delivery.tag
        if generation == self._generation and channel.is_open:
            self._outstanding.get(channel, set()).discard(tag)
            action(channel, tag)
        # else: the delivery's connection is gone; the broker has requeued it already

    def _ack_later(self, channel, tag: int) -> None:
        """Acks are sent once per turn of the I/O loop, as few frames as possible (see _flush_acks)."""
        self._to_ack.setdefault(channel, []).append(tag)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._ioloop.add_callback(self._flush_acks)

    def _flush_acks(self) -> None:
        """One `multiple` ack covers every tag below the lowest delivery still being processed
        (all of those are settled); tags above it are acked one by one, so a slow message never
        holds back the acks of the others."""
        self._flush_scheduled = False
        to_ack, self._to_ack = self._to_ack, {}
        for channel, tags in to_ack.items():
            if not channel.is_open:
                continue
            outstanding = self._outstanding.get(channel)
            floor = min(outstanding) if outstanding else None
            below = [t for t in tags if floor is None or t < floor]
            if below:
                channel.basic_ack(max(below), multiple=True)
            for tag in tags:
                if floor is not None and tag > floor:
                    channel.basic_ack(tag)

    # -- one-off operations on a blocking connection -----------------------------------------

    def _blocking(self, heartbeat: int | None = None):
        """A blocking connection to the first node that takes it, from the I/O connection's node on
        (pika tries a list in turn, for the last one's connection_attempts rounds)."""
        nodes = [copy.copy(p) for p in self._nodes[self._node:] + self._nodes[:self._node]]
        for params in nodes:
            params.connection_attempts, params.socket_timeout = 3, 10
            if heartbeat is not None:
                params.heartbeat = heartbeat
        try:
            return pika.BlockingConnection(nodes)
        except pika.exceptions.AMQPConnectionError as exc:
            raise TransientError(f"cannot connect to RabbitMQ at {mask_url(self.url)}: "
                                 f"{without_password(repr(exc), self.url)}") from None

    def _held(self) -> pika.BlockingConnection:
        """The one-off connection, (re)opened when needed. No heartbeat: nothing pumps it between
        calls, and RabbitMQ would close an idle connection whose heartbeats it misses."""
        if self._oneoff is None or not self._oneoff.is_open:
            self._oneoff, self._reader = self._blocking(heartbeat=0), None
        return self._oneoff

    def _on_own_channel(self, operation: Callable[[Any], Any], retry: bool) -> Any:
        """Run `operation(channel)` on a channel of its own (a failed passive declare closes its
        channel); `retry`: once more on a new connection if the held one was found dead."""
        with self._oneoff_lock:
            try:
                channel = self._held().channel()
            except pika.exceptions.AMQPConnectionError:
                if not retry:
                    raise
                self._oneoff = None
                channel = self._held().channel()
            try:
                return operation(channel)
            finally:
                if channel.is_open:
                    channel.close()

    def declare(self, topology: Topology) -> None:
        with self._blocking() as connection:
            channel = connection.channel()
            for name, kind in topology.exchanges:
                channel.exchange_declare(name, kind, durable=True)
            for queue in topology.queues:
                quorum = is_quorum(queue, len(self._nodes))
                try:
                    channel.queue_declare(queue.name, durable=True, arguments=queue_arguments(queue, quorum))
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 406:
                        raise
                    raise inequivalent(queue.name, quorum, exc.reply_text) from None
            for binding in topology.bindings:
                channel.queue_bind(binding.queue, binding.exchange, binding.routing_key)

    def queue_depth(self, queue: str) -> tuple[int, int] | None:
        def depth(channel):
            try:
                ok = channel.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                return None
            return ok.method.message_count, ok.method.consumer_count
        return self._on_own_channel(depth, retry=True)

    def purge(self, queue: str) -> int:
        return self._on_own_channel(lambda channel: channel.queue_purge(queue).method.message_count, retry=False)

    def get(self, queue: str) -> Delivery | None:
        with self._oneoff_lock:
            if self._reader is None or not self._reader.is_open:
                self._reader = self._held().channel()
            method, properties, body = self._reader.basic_get(queue, auto_ack=False)
            if method is None:
                return None
            self._held_tags[method.delivery_tag] = queue
            return Delivery(body, properties.content_type, properties.headers or {}, properties.message_id,
                            queue, method.redelivered, _Fetched(self._reader, method.delivery_tag))

    def give_back_fetched(self) -> None:
        """Close the reader channel, then wait until what it held is ready again: a quorum queue
        takes back a closed channel's messages a moment after the close (a browse right after a
        browse saw an empty queue 10 times in 50), a classic queue at once."""
        with self._oneoff_lock:
            reader, self._reader = self._reader, None
            held, self._held_tags = collections.Counter(self._held_tags.values()), {}
            if reader is None or not reader.is_open:
                return
            ready = {queue: (self.queue_depth(queue) or (0, 0))[0] for queue in held}
            reader.close()
            deadline = time.monotonic() + GIVE_BACK_WAIT
            for queue, count in held.items():
                while (self.queue_depth(queue) or (0, 0))[0] < ready[queue] + count and time.monotonic() < deadline:
                    time.sleep(0.005)  # another consumer may take some: then the deadline ends the wait

    def _settle_fetched(self, fetched: _Fetched, action) -> None:
        with self._oneoff_lock:
            if fetched.channel is self._reader and fetched.channel.is_open:
                action(fetched.channel, fetched.tag)
                self._held_tags.pop(fetched.tag, None)
            # else: given back already; the message is in its queue again


    def _where(self) -> str:
        """The node connected to (or tried next), password masked."""
        return mask_url(self._urls[self._node])


def _parameters(url: str, heartbeat: int, connection_name: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 60
    params.client_properties = {"connection_name": connection_name}
    return params


def inequivalent(queue: str, quorum: bool, why: str) -> ConfigError:
    """RabbitMQ keeps a queue's type and arguments for its life: a queue made classic (or quorum with
    another delivery limit) refuses esb's declaration with PRECONDITION_FAILED."""
    wanted = "a quorum queue" if quorum else "a classic queue"
    return ConfigError(f"RabbitMQ will not declare the queue '{queue}' as {wanted}, since it exists with other "
                       f"arguments ({why})",
                       hint=f"once it is empty, delete it (rabbitmqctl delete_queue {queue}) and start esb again, "
                            "or keep the old queue type with broker.queues (README: Moving to quorum queues)")


@dataclasses.dataclass(frozen=True, eq=False)
class _Fetched:
    """The tag of a message fetched by `get`: settled on the one-off connection, not the I/O thread."""

    channel: Any
    tag: int


def is_quorum(queue: QueueSpec, nodes: int) -> bool:
    """Whether to declare `queue` as a quorum queue: as its spec says, else (broker.queues: auto) when
    esb was given several nodes. RabbitMQ does not tell an AMQP client how many nodes its cluster has
    (the server properties name the cluster, not its size), so the URL list is the sign of a cluster."""
    return nodes > 1 if queue.quorum is None else queue.quorum


def queue_arguments(queue: QueueSpec, quorum: bool) -> dict:
    """The x-arguments of a queue, classic or quorum. A classic queue keeps exactly what esb always
    declared (RabbitMQ refuses a queue redeclared with other arguments)."""
    arguments: dict = {"x-queue-type": "quorum"} if quorum else {}
    if queue.single_active_consumer:
        # An ordered route's queues: the broker hands them to one consumer at a time and another takes
        # over when it goes, so messages of a key run in order across workers and machines.
        arguments["x-single-active-consumer"] = True
    if queue.ttl_ms is not None:
        # A retry tier: messages wait out the TTL, then the broker dead-letters them back to
        # the route's queue through the default exchange. No timer of ours has to survive.
        arguments["x-message-ttl"] = queue.ttl_ms
    if quorum and queue.delivery_limit is not None:
        arguments["x-delivery-limit"] = queue.delivery_limit
    if queue.dead_letter_to is not None and (quorum or queue.ttl_ms is not None):
        arguments["x-dead-letter-exchange"] = ""
        arguments["x-dead-letter-routing-key"] = queue.dead_letter_to
        if quorum:
            # at-most-once (the default) drops a dead letter its target's leader does not take; at-least-
            # once (RabbitMQ 3.10+) keeps it until confirmed, and works only with reject-publish overflow
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
    return arguments

