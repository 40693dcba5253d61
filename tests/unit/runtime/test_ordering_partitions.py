"""Order per key: what an ordered route declares, where the partitioner sends each message, and
what validation refuses because it could not keep order."""

from __future__ import annotations

import textwrap

import pytest
from runtime_fakes import RecordingBroker, delivery

from esb.errors import ConfigErrors, NotConfirmed
from esb.loading.project import load_project
from esb.routes.model import Ordering, Route, Source
from esb.runtime.lanes import Timer
from esb.runtime.ordering import Partitioner, partition_of
from esb.runtime.rabbit import queue_arguments
from esb.runtime.topology import route_topology

ROUTE = """\
name: postings
source: {exchange: bank.events, binding_key: posting}
ordering: {key: account, partitions: 4}
steps:
  - publish: {exchange: ledger.events, routing_key: posting}
"""


def load(tmp_path, text: str):
    (tmp_path / "routes").mkdir(exist_ok=True)
    (tmp_path / "routes/postings.yaml").write_text(textwrap.dedent(text))
    return load_project(tmp_path, {})


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load(tmp_path, text)
    return [str(e) for e in caught.value.errors]


def ordered(partitions: int = 4) -> Route:
    return Route("postings", Source("postings", exchange="bank.events"), (), ordering=Ordering("account", partitions))


def test_an_ordered_route_loads_with_its_key_and_partitions(tmp_path):
    route = load(tmp_path, ROUTE).routes["postings"]
    assert route.ordering == Ordering(key="account", partitions=4)


def test_an_ordered_route_reading_xml_bodies_is_refused(tmp_path):
    found = problems(tmp_path, ROUTE.replace("binding_key: posting}", "binding_key: posting, format: xml}"))
    assert found == ["routes/postings.yaml:2:63: an ordered route reads its key from a JSON body, but this route "
                     "reads xml bodies — order a route whose source sends JSON, or drop `ordering`"]


def test_more_concurrency_than_partitions_is_refused(tmp_path):
    found = problems(tmp_path, ROUTE + "concurrency: 16\n")
    assert found == ["routes/postings.yaml:6:14: concurrency 16 is more than the 4 partitions of this ordered route: "
                     "each partition runs one message at a time — raise ordering.partitions or lower concurrency"]


def test_an_ordering_key_that_is_no_jmespath_is_refused(tmp_path):
    found = problems(tmp_path, ROUTE.replace("key: account", "key: 'account['"))
    assert len(found) == 1 and found[0].startswith("routes/postings.yaml:3:")


def test_an_ordered_route_has_single_active_consumer_partitions_and_no_delay_tiers():
    queues = {q.name: queue_arguments(q, quorum=False) for q in route_topology(ordered()).queues}
    assert sorted(queues) == ["postings", "postings.dlq", "postings.p0", "postings.p1", "postings.p2", "postings.p3"]
    assert queues["postings"] == {"x-single-active-consumer": True}
    assert all(queues[f"postings.p{i}"] == {"x-single-active-consumer": True} for i in range(4))
    assert queues["postings.dlq"] == {}


def test_quorum_partitions_dead_letter_what_the_broker_stops_delivering():
    spec = next(q for q in route_topology(ordered()).queues if q.name == "postings.p0")
    arguments = queue_arguments(spec, quorum=True)
    assert arguments["x-single-active-consumer"] is True and arguments["x-queue-type"] == "quorum"
    assert arguments["x-dead-letter-routing-key"] == "postings.dlq"


def test_a_key_lands_in_the_same_partition_in_every_process():
    assert partition_of("DE89370400440532013000", 8) == partition_of("DE89370400440532013000", 8) == 6
    assert {partition_of(f"ACC{n}", 8) for n in range(100)} == set(range(8))


def test_the_partitioner_moves_a_message_to_its_keys_partition_then_acks_it():
    broker, timer = RecordingBroker(), Timer()
    partitioner = Partitioner(ordered(), broker, timer, 1 << 20)
    partitioner._move(delivery("m-1", b'{"account": "ACC7"}'))
    timer.stop()
    [(_, queue, message), ack] = broker.events
    assert queue == f"postings.p{partition_of('ACC7', 4)}" and message.body == b'{"account": "ACC7"}'
    assert message.message_id == "m-1" and ack == ("ack", "m-1")


def test_a_message_without_its_key_goes_to_partition_0_where_the_route_dead_letters_it():
    partitioner = Partitioner(ordered(), RecordingBroker(), Timer(), 1 << 20)
    assert partitioner.partition(delivery("m-1", b'{"amount": "1.00"}')) == 0
    assert partitioner.partition(delivery("m-2", b'not json')) == 0


def test_a_refused_move_puts_the_message_back_at_the_head_of_the_routes_queue_not_acked():
    broker, timer = RecordingBroker(refuse=NotConfirmed("nacked")), Timer()
    Partitioner(ordered(), broker, timer, 1 << 20)._move(delivery("m-1", b'{"account": "ACC7"}'))
    timer.stop()  # runs the pending reject now
    assert broker.kinds() == ["publish", "reject"]
