"""The sample finance routes in routes/, unchanged, end to end on RabbitMQ: OA expense → ledger
voucher → OA archive (and its compensation), ERP payment order → pain.001 on the bank's SFTP,
camt.053 statements from the bank's SFTP → reconciled ledger entries. Each run gets a RabbitMQ
virtual host of its own, so the routes keep their real names and nothing is left behind."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from demo_expectations import EXPECTED, mismatches

from esb.demo import run_demo


@pytest.fixture
def vhost_url(rabbit_url):
    vhost = f"esb-test-{uuid.uuid4().hex[:8]}"
    ctl = ["rabbitmqctl", "-q"]
    subprocess.run([*ctl, "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run([*ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                   capture_output=True, timeout=60)
    yield rabbit_url.rsplit("/", 1)[0] + "/" + vhost
    subprocess.run([*ctl, "delete_vhost", vhost], capture_output=True, timeout=60)


def test_the_finance_flows_come_out_right_on_rabbitmq(project_root, vhost_url):
    lines = []
    outcomes = run_demo(project_root, lines.append, broker_url=vhost_url)
    report = "\n".join(lines)
    assert "bank SFTP" in lines[0], "the SFTP flows did not run (is openssh-server installed?)\n" + report
    assert [o.scenario.name for o in outcomes] == list(EXPECTED), report
    wrong = {o.scenario.name: mismatches(o, EXPECTED[o.scenario.name]) for o in outcomes}
    assert {name: found for name, found in wrong.items() if found} == {}, report
    assert [o.scenario.name for o in outcomes if not o.ok] == [], report
