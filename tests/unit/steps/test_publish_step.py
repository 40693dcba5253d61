"""The publish step: to a named exchange, or to the default exchange (`exchange: ""`, the key names the queue)."""

from routebuild import route_builders

from esb.message import Message
from esb.routes import graph
from esb.runtime.topology import route_topology
from esb.steps.pipeline import run_steps

HEAD = "name: r\nsource: {exchange: oa.events, binding_key: k}\nsteps:\n"
build, route_with = route_builders(HEAD)


class FakeIO:
    def __init__(self):
        self.published = []

    def publish(self, step, exchange, routing_key, message):
        self.published.append((exchange, routing_key, message.body))


def test_publish_sends_the_message_to_the_exchange_with_the_key(tmp_path):
    route = route_with(tmp_path, "  - publish: {exchange: finance.review, routing_key: voucher.large}\n")
    io = FakeIO()
    run_steps(route.steps, Message({"a": 1}), io)
    assert io.published == [("finance.review", "voucher.large", {"a": 1})]


def test_an_empty_exchange_is_the_default_exchange_and_the_key_names_the_queue(tmp_path):
    route = route_with(tmp_path, '  - publish: {exchange: "", routing_key: finance.archive}\n')
    io = FakeIO()
    run_steps(route.steps, Message({"a": 1}), io)
    assert io.published == [("", "finance.archive", {"a": 1})]


def test_the_default_exchange_is_never_declared(tmp_path):
    route = route_with(tmp_path, '  - publish: {exchange: "", routing_key: finance.archive}\n'
                                 "  - publish: {exchange: finance.review, routing_key: voucher.large}\n")
    names = [name for name, _ in route_topology(route).exchanges]
    assert names == ["oa.events", "finance.review"]


def test_the_graph_draws_the_default_exchange_by_name(tmp_path):
    route = route_with(tmp_path, '  - publish: {exchange: "", routing_key: finance.archive}\n')
    assert '{{"(default exchange)"}}' in graph.mermaid(route)
    assert 'label="(default exchange)", shape=hexagon' in graph.dot(route)
    assert '-.->|"finance.archive"|' in graph.mermaid(route)


def test_publish_still_needs_an_exchange_and_a_key(tmp_path):
    for steps in ("  - publish: {routing_key: k}\n", '  - publish: {exchange: ""}\n',
                  "  - publish: {exchange: null, routing_key: k}\n"):
        route, errors = build(tmp_path, steps)
        assert route is None and errors, steps
