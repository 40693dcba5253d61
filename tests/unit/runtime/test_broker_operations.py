"""The Broker protocol's one-off operations the CLI uses (get, ack, give back, purge, depth, publish
with confirm), on the embedded broker (memory://) and on RabbitMQ (queues named with a uuid,
deleted afterwards)."""

from __future__ import annotations

import socket
import time
import uuid

import pika
import pytest

from esb.errors import NotConfirmed, TransientError, Unroutable
from esb.runtime.broker import Binding, Confirmation, Outgoing, QueueSpec, Topology, confirmed_publish
from esb.runtime.connect import connected, make_broker
from esb.runtime.state import Seal
from esb.runtime.urls import mask_url

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture(params=["memory", "rabbit"])
def url(request) -> str:
    if request.param == "memory":
        return "memory://"
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672", pytrace=False)
    return RABBIT_URL


@pytest.fixture
def queue(url) -> str:
    name = f"ops-{uuid.uuid4().hex[:8]}"
    yield name
    if url.startswith("amqp"):
        with pika.BlockingConnection(pika.URLParameters(url)) as connection:
            connection.channel().queue_delete(name)


@pytest.fixture
def broker(url, queue):
    with connected(url) as broker:
        broker.declare(Topology(queues=(QueueSpec(queue),)))
        yield broker


def fill(broker, queue: str, *ids: str) -> None:
    for message_id in ids:
        broker.publish("", queue, Outgoing(message_id.encode(), "text/plain", {"n": message_id}, message_id)).result(10)


def fetch_all(broker, queue: str) -> list[str]:
    ids = []
    while (delivery := broker.get(queue)) is not None:
        ids.append(delivery.message_id)
    return ids


def test_get_fetches_messages_in_order_with_body_headers_and_id_and_none_when_empty(broker, queue):
    assert broker.get(queue) is None
    fill(broker, queue, "a", "b")
    first = broker.get(queue)
    assert (first.body, first.content_type, first.message_id, first.queue) == (b"a", "text/plain", "a", queue)
    assert dict(first.headers) == {"n": "a"}
    assert broker.get(queue).message_id == "b"
    assert broker.get(queue) is None


def test_fetched_messages_given_back_are_in_the_queue_again_in_their_order(broker, queue):
    fill(broker, queue, "a", "b", "c")
    assert fetch_all(broker, queue) == ["a", "b", "c"]
    broker.give_back_fetched()
    assert broker.queue_depth(queue)[0] == 3
    assert fetch_all(broker, queue) == ["a", "b", "c"]
    broker.give_back_fetched()


def test_an_acked_fetched_message_is_gone_and_the_others_come_back(broker, queue):
    fill(broker, queue, "a", "b", "c")
    fetched = [broker.get(queue) for _ in range(3)]
    broker.ack(fetched[1])
    broker.give_back_fetched()
    assert fetch_all(broker, queue) == ["a", "c"]
    broker.give_back_fetched()


def test_an_ack_after_the_give_back_is_dropped_and_the_message_stays(broker, queue):
    fill(broker, queue, "a")
    fetched = broker.get(queue)
    broker.give_back_fetched()
    broker.ack(fetched)
    assert fetch_all(broker, queue) == ["a"]
    broker.give_back_fetched()


def test_fetched_messages_not_given_back_return_when_the_broker_stops(url, broker, queue):
    fill(broker, queue, "a", "b")
    with connected(url) as reader:
        assert fetch_all(reader, queue) == ["a", "b"]
    assert broker.queue_depth(queue)[0] == 2


def test_purge_deletes_every_message_and_says_how_many(broker, queue):
    fill(broker, queue, "a", "b", "c")
    assert broker.purge(queue) == 3
    assert broker.queue_depth(queue)[0] == 0 and broker.get(queue) is None


def test_the_depth_of_a_missing_queue_is_none(broker):
    assert broker.queue_depth(f"missing-{uuid.uuid4().hex[:8]}") is None


def test_a_publish_nothing_is_bound_for_fails_naming_the_exchange_and_key_on_both_brokers(broker, queue):
    exchange = f"{queue}-x"
    broker.declare(Topology(exchanges=((exchange, "topic"),)))
    with pytest.raises(Unroutable, match=f"no queue is bound to exchange '{exchange}' for key 'nobody'"):
        broker.publish(exchange, "nobody", Outgoing(b"x", "text/plain", {}, "m")).result(10)
    with pytest.raises(Unroutable, match="no queue is bound to the default exchange .* for key 'no-such-queue'"):
        broker.publish("", "no-such-queue", Outgoing(b"x", "text/plain", {}, "m")).result(10)


def test_a_confirmed_publish_function_returns_once_the_message_is_in_the_queue(broker, queue):
    exchange = f"{queue}-x"
    broker.declare(Topology(exchanges=((exchange, "topic"),), bindings=(Binding(queue, exchange, "#"),)))
    confirmed_publish(broker)(exchange, "k", b"body", "text/plain", {"h": "1"}, "m-1")
    delivery = broker.get(queue)
    assert (delivery.body, delivery.message_id, dict(delivery.headers)) == (b"body", "m-1", {"h": "1"})
    broker.give_back_fetched()


def test_a_confirmed_publish_not_confirmed_in_time_is_not_confirmed_naming_the_message():
    class Silent:
        def publish(self, exchange, routing_key, message):
            return Confirmation()  # never completes
    with pytest.raises(NotConfirmed, match="no confirm from the broker within 0.05s for message m-1"):
        confirmed_publish(Silent(), timeout=0.05)("", "q", b"x", "text/plain", {}, "m-1")


def test_a_broker_that_cannot_connect_fails_soon_saying_where_without_the_password():
    started = time.monotonic()
    with pytest.raises(TransientError) as caught, connected("amqp://guest:s3cret@127.0.0.1:1/%2F", connect_timeout=1):
        pass
    assert time.monotonic() - started < 5
    said = str(caught.value)
    assert "cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:1/%2F" in said and "s3cret" not in said


def test_mask_url_hides_only_the_password():
    assert mask_url("amqp://guest:s3cret@host:5672/%2F") == "amqp://guest:***@host:5672/%2F"
    assert mask_url("amqp://host:5672/%2F") == "amqp://host:5672/%2F"
    assert mask_url("memory://") == "memory://"


def test_make_broker_picks_rabbitmq_for_amqp_and_kombu_for_the_rest():
    from esb.runtime.kombu_broker import KombuBroker
    from esb.runtime.rabbit import RabbitBroker
    rabbit, embedded = make_broker(RABBIT_URL), make_broker("memory://")
    try:
        assert isinstance(rabbit, RabbitBroker) and isinstance(embedded, KombuBroker)
    finally:
        rabbit.stop()
        embedded.stop()


def test_browsing_a_quorum_dead_letter_queue_again_and_again_never_drops_a_dead_letter(url):
    """RabbitMQ before 4.3 (3.10.8 here) counts a message returned by closing its channel as a
    delivery on a quorum queue, and 4.0 gives quorum queues a delivery limit of 20 by default:
    a dead-letter queue must carry no limit, or `esb dlq list` would delete what it shows."""
    if not url.startswith("amqp"):
        pytest.skip("quorum queues are RabbitMQ's")
    from esb.runtime import dlq
    from esb.runtime.topology import route_topology
    route = f"ops-{uuid.uuid4().hex[:8]}"
    try:
        with connected(url) as broker:
            dead_letters = [q for q in route_topology(quorum_route(route)).queues if q.name.endswith(".dlq")]
            broker.declare(Topology(queues=tuple(dead_letters)))
            fill(broker, f"{route}.dlq", "a", "b")
            for _ in range(25):
                assert [letter.id for letter in dlq.browse(broker, route, seal=Seal(b"k" * 32))] == ["a", "b"]
    finally:
        with pika.BlockingConnection(pika.URLParameters(url)) as connection:
            connection.channel().queue_delete(f"{route}.dlq")


def quorum_route(name: str):
    from esb.routes.model import Route, Source
    return Route(name, Source(name, quorum=True), ())


def test_topic_patterns_match_as_amqp_matches_them():
    from esb.runtime.runtime import topic_matches
    assert topic_matches("#", "statement.camt053") and topic_matches("statement.*", "statement.mt940")
    assert topic_matches("statement.#", "statement") and topic_matches("a.#.z", "a.b.c.z")
    assert not topic_matches("statement.*", "statement.camt.053") and not topic_matches("payment.*", "statement.x")
    assert not topic_matches("statement.camt053", "statement.camt052")
