"""`esb declare` on RabbitMQ: the topology exists before any `esb run`, so `esb send` reaches the route's queue."""

from __future__ import annotations

import json
from pathlib import Path

import pika
import pytest
from click.testing import CliRunner
from integration_helpers import delete_queues, write_project

from esb.cli.main import esb
from esb.runtime.connect import connected

ROUTE = """\
name: {name}
source: {{exchange: in-{uid}, binding_key: "claims.{uid}"}}
retry: {{attempts: 3, in_process: 0, backoff: {{initial: 1s, multiplier: 2, max: 2s}}}}
steps:
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""


@pytest.fixture
def project(tmp_path: Path, rabbit_url: str, uid: str):
    write_project(tmp_path, {f"routes/{name}.yaml": ROUTE.format(name=f"{name}-{uid}", uid=uid)
                             for name in ("claims", "other")})
    yield tmp_path
    delete_queues(rabbit_url, uid)
    with pika.BlockingConnection(pika.URLParameters(rabbit_url)) as connection:
        channel = connection.channel()
        for exchange in (f"in-{uid}", f"out-{uid}"):
            channel.exchange_delete(exchange)


def esb_cli(root: Path, *args: str, stdin: str | None = None):
    return CliRunner().invoke(esb, ["--root", str(root), *args], input=stdin, env={"ESB_BROKER_URL": None})


def routes_status(root: Path, url: str) -> dict[str, dict]:
    result = esb_cli(root, "status", "--json", "--broker", url)
    assert result.exit_code == 0, result.output
    return {row["route"]: row for row in json.loads(result.stdout)["routes"]}


def test_send_before_any_run_fails_until_declare_then_reaches_the_route_queue(project, rabbit_url, uid):
    before = esb_cli(project, "send", f"claims-{uid}", "-", "--broker", rabbit_url, stdin='{"claim_id": "C-1"}')
    assert before.exit_code == 1 and "no exchange" in before.stderr  # what an operator met before `esb declare`

    declared = esb_cli(project, "declare", "--broker", rabbit_url)
    assert declared.exit_code == 0, declared.output
    for line in (f"queue     claims-{uid}", f"queue     claims-{uid}.dlq", f"queue     claims-{uid}.retry.1000ms",
                 f"exchange  in-{uid} (topic)", f"exchange  out-{uid} (topic)",
                 f"binding   in-{uid} --claims.{uid}--> claims-{uid}"):
        assert line in declared.stdout.splitlines()
    assert declared.stdout.splitlines()[-1].startswith("declared 2 exchanges, 8 queues and 2 bindings of 2 routes on ")

    sent = esb_cli(project, "send", f"claims-{uid}", "-", "--id", f"M-{uid}", "--broker", rabbit_url,
                   stdin='{"claim_id": "C-1", "amount": 10.05}')
    assert sent.exit_code == 0, sent.output
    assert routes_status(project, rabbit_url)[f"claims-{uid}"] == {
        "route": f"claims-{uid}", "queue": f"claims-{uid}", "depth": 1, "consumers": 0, "dlq": 0, "retrying": 0}
    with connected(rabbit_url) as broker:
        delivery = broker.get(f"claims-{uid}")
        broker.ack(delivery)
    assert (delivery.message_id, delivery.content_type) == (f"M-{uid}", "application/json")
    assert delivery.body == b'{"claim_id": "C-1", "amount": 10.05}'


def test_declare_route_declares_only_that_route(project, rabbit_url, uid):
    result = esb_cli(project, "declare", "--route", f"claims-{uid}", "--broker", rabbit_url)
    assert result.exit_code == 0, result.output
    rows = routes_status(project, rabbit_url)
    assert rows[f"claims-{uid}"]["depth"] == 0 and rows[f"claims-{uid}"]["dlq"] == 0
    assert rows[f"other-{uid}"]["depth"] is None and rows[f"other-{uid}"]["dlq"] is None
    assert f"other-{uid}" not in result.stdout


def test_declaring_twice_is_harmless(project, rabbit_url, uid):
    first = esb_cli(project, "declare", "--broker", rabbit_url)
    second = esb_cli(project, "declare", "--broker", rabbit_url)
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert first.stdout == second.stdout
