"""A RabbitMQ cluster as a list of nodes (one setting, every password masked, the nodes tried in
turn) and the queue arguments of each queue type; no broker needed."""

from __future__ import annotations

import textwrap

import pytest
from structlog.testing import capture_logs

from esb.errors import TransientError
from esb.loading.project import load_project
from esb.routes.model import Backoff, RetryPolicy, Route, Source
from esb.runtime.broker import QueueSpec
from esb.runtime.rabbit import RabbitBroker, is_quorum, queue_arguments
from esb.runtime.topology import route_topology, with_queue_settings
from esb.runtime.urls import mask_url, split_urls, without_password

NODES = "amqp://esb:s3cret@rabbit1:5672/fin, amqp://esb:p,w@rabbit2:5672/fin,amqps://esb:other@rabbit3:5671/fin"


def test_a_comma_separated_broker_url_is_a_list_of_nodes_and_a_password_may_hold_a_comma():
    assert split_urls(NODES) == ["amqp://esb:s3cret@rabbit1:5672/fin", "amqp://esb:p,w@rabbit2:5672/fin",
                                 "amqps://esb:other@rabbit3:5671/fin"]
    assert split_urls("amqp://guest:guest@127.0.0.1:5672/%2F") == ["amqp://guest:guest@127.0.0.1:5672/%2F"]


def test_every_password_of_a_url_list_is_masked():
    assert mask_url(NODES) == ("amqp://esb:***@rabbit1:5672/fin,amqp://esb:***@rabbit2:5672/fin,"
                               "amqps://esb:***@rabbit3:5671/fin")
    said = without_password("refused by esb:s3cret@rabbit1 and esb:other@rabbit3", NODES)
    assert "s3cret" not in said and "other" not in said


def test_a_broker_that_reaches_no_node_tries_each_in_turn_and_names_them_masked():
    broker = RabbitBroker("amqp://esb:s3cret@127.0.0.1:1/%2F,amqp://esb:s3cret@127.0.0.1:2/%2F", connect_timeout=1.5)
    with capture_logs() as logs, pytest.raises(TransientError) as caught:
        broker.start()
    tried = [e["broker"] for e in logs if e["event"] == "broker_connect_failed"]
    assert tried[:3] == ["amqp://esb:***@127.0.0.1:1/%2F", "amqp://esb:***@127.0.0.1:2/%2F",
                         "amqp://esb:***@127.0.0.1:1/%2F"]
    assert str(caught.value).startswith("cannot connect to RabbitMQ at amqp://esb:***@127.0.0.1:1/%2F,"
                                        "amqp://esb:***@127.0.0.1:2/%2F: ")
    assert "s3cret" not in str(caught.value) + repr(logs)


def retrying_route(quorum: bool | None = None) -> Route:
    return Route("pay", Source("pay", quorum=quorum), (), retry=RetryPolicy(attempts=2, backoff=Backoff(initial=5)))


def arguments(route: Route, nodes: int = 1) -> dict[str, dict]:
    return {q.name: queue_arguments(q, is_quorum(q, nodes)) for q in route_topology(route).queues}


def test_classic_queues_keep_exactly_the_arguments_esb_always_declared():
    assert arguments(with_queue_settings(retrying_route(), "classic", 3), nodes=3) == {
        "pay": {}, "pay.dlq": {},
        "pay.retry.5000ms": {"x-message-ttl": 5000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "pay"}}


def test_quorum_queues_carry_the_delivery_limit_and_dead_letter_at_least_once_except_the_dlq():
    at_least_once = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    assert arguments(with_queue_settings(retrying_route(), "quorum", 4)) == {
        "pay": {"x-queue-type": "quorum", "x-delivery-limit": 4, "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": "pay.dlq", **at_least_once},
        "pay.dlq": {"x-queue-type": "quorum"},  # no limit: browsing a DLQ counts as deliveries
        "pay.retry.5000ms": {"x-queue-type": "quorum", "x-message-ttl": 5000, "x-delivery-limit": 4,
                           "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "pay", **at_least_once}}


def test_auto_makes_quorum_queues_when_the_broker_has_several_nodes_and_classic_ones_on_one():
    route = with_queue_settings(retrying_route(), "auto", 3)
    assert {q.quorum for q in route_topology(route).queues} == {None}
    assert all(a.get("x-queue-type") == "quorum" for a in arguments(route, nodes=2).values())
    assert all("x-queue-type" not in a for a in arguments(route, nodes=1).values())


@pytest.mark.parametrize("own, queues, expected", [(True, "classic", True), (False, "quorum", False),
                                                   (None, "quorum", True), (None, "classic", False)])
def test_a_routes_own_source_quorum_overrides_broker_queues(own, queues, expected):
    assert with_queue_settings(retrying_route(own), queues, 3).source.quorum is expected


def test_the_project_loader_applies_broker_queues_and_delivery_limit_to_every_route(tmp_path):
    files = {"config/esb.yaml": "broker: {queues: quorum}\ndelivery: {limit: 5}\n",
             "routes/a.yaml": "name: a\nsource: {queue: a}\nsteps:\n  - json_to_xml: {root: A}\n",
             "routes/b.yaml": "name: b\nsource: {queue: b, quorum: false}\nsteps:\n  - json_to_xml: {root: B}\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    routes = load_project(tmp_path, {}).routes
    assert (routes["a"].source.quorum, routes["a"].source.delivery_limit) == (True, 5)
    assert routes["b"].source.quorum is False


def test_a_queue_spec_without_a_type_is_left_to_the_broker():
    assert is_quorum(QueueSpec("q", quorum=None), nodes=3) and not is_quorum(QueueSpec("q", quorum=None), nodes=1)
