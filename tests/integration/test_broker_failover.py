"""A RabbitMQ cluster as a list of nodes, shown on the one shared node: a dead node in the list is
skipped, a connection the server closes comes back through the list, and quorum queues (forced by
broker.queues) carry their arguments and dead-letter what fails for good. The 3-node cluster itself
is `make cluster-test`'s."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from integration_helpers import delete_queues, write_project
from structlog.testing import capture_logs
from test_bus import relay_route

from esb.loading.project import load_project
from esb.runtime.rabbit import RabbitBroker
from esb.runtime.runtime import Runtime
from esb.store import SqliteStore

DEAD_NODE = "amqp://guest:s3cret@127.0.0.1:1/%2F"  # nothing listens on port 1: refused at once
RELAY = "  - publish: {{exchange: out-{uid}, routing_key: done}}\n"


@pytest.fixture
def start_runtime(tmp_path, uid, rabbit_url):
    started = []

    def start(broker_url: str, config: str = "", steps: str = RELAY) -> Runtime:
        files = {"routes/r.yaml": relay_route(uid, steps.format(uid=uid)), "config/esb.yaml": config}
        project = load_project(write_project(tmp_path, files), {})
        broker = RabbitBroker(broker_url, connection_name=f"esb test {uid}", connect_timeout=10)
        runtime = Runtime(project, broker, store=SqliteStore(str(tmp_path / "idem.sqlite3")))
        try:
            runtime.start()
        except Exception:
            broker.stop()
            raise
        started.append(runtime)
        return runtime
    yield start
    for runtime in started:
        runtime.stop(drain_timeout=10)
    delete_queues(rabbit_url, uid)


def ctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=True).stdout


def close_connections_named(name: str) -> int:
    """Close, from the server, only the connections whose client named them `name` (others' tests
    share this broker: never all of them)."""
    pids = [line.split("\t")[0] for line in ctl("list_connections", "-q", "pid", "client_properties").splitlines()
            if f'"{name}"' in line]
    for pid in pids:
        ctl("close_connection", pid, "closed by test_broker_cluster")
    return len(pids)


def queue_arguments(name: str) -> tuple[str, dict]:
    queues = json.loads(ctl("list_queues", "-q", "name", "type", "arguments", "--formatter", "json"))
    [queue] = [q for q in queues if q["name"] == name]
    return queue["type"], {key: value for key, _, value in queue["arguments"]}


def send_and_receive(bus, uid: str, numbers: range) -> None:
    """Send `numbers`; every number up to their end has come out once."""
    for n in numbers:
        bus.send(f"in-{uid}", "x", json.dumps({"n": n}).encode())
    outputs = bus.wait_for(f"seen-{uid}", numbers.stop, timeout=30)
    assert sorted(json.loads(o.body)["n"] for o in outputs) == list(range(numbers.stop))


def test_a_worker_given_a_dead_node_first_connects_to_the_live_one_and_routes(rabbit_url, rabbit_bus, uid,
                                                                              start_runtime):
    rabbit_bus.listen(f"seen-{uid}", f"out-{uid}")
    with capture_logs() as logs:
        start_runtime(f"{DEAD_NODE},{rabbit_url}")
    send_and_receive(rabbit_bus, uid, range(5))
    [failed] = [e for e in logs if e["event"] == "broker_connect_failed"]
    [connected] = [e for e in logs if e["event"] == "broker_connected"]
    assert failed["broker"] == "amqp://guest:***@127.0.0.1:1/%2F"
    assert connected["node"] == "2/2" and connected["broker"] == "amqp://guest:***@127.0.0.1:5672/%2F"
    assert "s3cret" not in repr(logs)


def test_a_connection_closed_by_the_server_fails_over_through_the_list_and_messages_keep_flowing(
        rabbit_url, rabbit_bus, uid, start_runtime):
    rabbit_bus.listen(f"seen-{uid}", f"out-{uid}")
    with capture_logs() as logs:
        runtime = start_runtime(f"{rabbit_url},{DEAD_NODE}")
        send_and_receive(rabbit_bus, uid, range(5))
        assert close_connections_named(f"esb test {uid}") == 1
        deadline = time.monotonic() + 20
        while sum(e["event"] == "broker_connected" for e in logs) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        send_and_receive(rabbit_bus, uid, range(5, 10))
    events = [(e["event"], e.get("node") or e.get("broker")) for e in logs if e["event"].startswith("broker_")]
    assert events == [("broker_connected", "1/2"), ("broker_connection_lost", "amqp://guest:***@127.0.0.1:5672/%2F"),
                      ("broker_connect_failed", "amqp://guest:***@127.0.0.1:1/%2F"), ("broker_connected", "1/2")]
    assert runtime.broker.health() == {"connected": True, "consumers": {f"r-{uid}": True}}


def test_broker_queues_quorum_declares_quorum_queues_with_their_arguments_and_dead_letters_from_them(
        rabbit_url, rabbit_bus, uid, start_runtime):
    runtime = start_runtime(rabbit_url, "broker: {queues: quorum}\ndelivery: {limit: 3}\n",
                            steps="  - json_to_xml: {{root: Doc}}\n")
    at_least_once = {"x-dead-letter-exchange": "", "x-dead-letter-strategy": "at-least-once",
                     "x-overflow": "reject-publish"}
    assert queue_arguments(f"r-{uid}") == ("quorum", {"x-queue-type": "quorum", "x-delivery-limit": 3,
                                                      "x-dead-letter-routing-key": f"r-{uid}.dlq", **at_least_once})
    assert queue_arguments(f"r-{uid}.dlq") == ("quorum", {"x-queue-type": "quorum"})
    assert queue_arguments(f"r-{uid}.retry.200ms") == ("quorum", {
        "x-queue-type": "quorum", "x-message-ttl": 200, "x-delivery-limit": 3,
        "x-dead-letter-routing-key": f"r-{uid}", **at_least_once})
    rabbit_bus.send(f"in-{uid}", "x", b'{"broken": ', message_id=f"B-{uid}")
    from integration_helpers import dead_letters
    [letter] = dead_letters(rabbit_bus, runtime, f"r-{uid}", 1)
    assert letter.id == f"B-{uid}" and letter.error_class == "transform" and letter.body == b'{"broken": '


def test_a_classic_queue_esb_would_now_declare_quorum_is_refused_in_one_sentence_naming_it(
        rabbit_url, uid, start_runtime):
    start_runtime(rabbit_url)  # an older esb made classic queues
    from esb.errors import ConfigError
    with pytest.raises(ConfigError) as caught:
        start_runtime(rabbit_url, "broker: {queues: quorum}\n")
    said = str(caught.value)
    assert said.startswith(f"RabbitMQ will not declare the queue 'r-{uid}' as a quorum queue, since it exists "
                           "with other arguments (PRECONDITION_FAILED - inequivalent arg ")
    assert f"delete it (rabbitmqctl delete_queue r-{uid})" in said and "broker.queues" in said
