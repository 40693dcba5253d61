"""What only RabbitMQ can show: quorum queues, and a dead letter the broker will not take."""

from __future__ import annotations

import time

import pika
from test_bus import relay_route


def queue_type(url: str, queue: str) -> str:
    import subprocess
    out = subprocess.run(["rabbitmqctl", "list_queues", "-q", "name", "type"], capture_output=True, text=True,
                         timeout=60).stdout
    return dict(line.split()[:2] for line in out.splitlines() if line.strip()).get(queue, "")


def test_a_quorum_route_declares_quorum_queues(rabbit_url, uid, run_routes_on_rabbit):
    steps = f"  - publish: {{exchange: out-{uid}, routing_key: done}}\n"
    route = relay_route(uid, steps).replace('binding_key: "#"}', 'binding_key: "#", quorum: true}')
    run_routes_on_rabbit({"routes/r.yaml": route})
    assert queue_type(rabbit_url, f"r-{uid}") == "quorum"
    assert queue_type(rabbit_url, f"r-{uid}.dlq") == "quorum"


def test_when_the_dead_letter_cannot_be_confirmed_the_source_is_not_acked(rabbit_url, uid, rabbit_bus,
                                                                          run_routes_on_rabbit):
    steps = "  - json_to_xml: {root: Doc}\n"
    run_routes_on_rabbit({"routes/r.yaml": relay_route(uid, steps)})
    with pika.BlockingConnection(pika.URLParameters(rabbit_url)) as connection:
        connection.channel().queue_delete(f"r-{uid}.dlq")  # now a dead letter is unroutable
    rabbit_bus.send(f"in-{uid}", "x", b'{"broken": ', message_id="P-1")
    time.sleep(2.5)  # the worker tries, fails to dead-letter, gives the message back, tries again
    rabbit_bus.listen(f"r-{uid}.dlq")  # the DLQ is back: the next try lands there
    [letter] = rabbit_bus.wait_for(f"r-{uid}.dlq", 1, timeout=15)
    assert letter.message_id == "P-1" and letter.headers["x-esb-error-class"] == "transform"
