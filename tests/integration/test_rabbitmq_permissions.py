"""The permissions deploy/README.md grants esb's RabbitMQ user are enough for what esb does, and no wider."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pika
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from esb.errors import Unroutable
from esb.loading.envfile import read_env_file
from esb.loading.project import load_project
from esb.runtime.broker import Outgoing
from esb.runtime.connect import make_broker
from esb.runtime.permissions import permissions
from esb.runtime.runtime import project_topology

ROOT = Path(__file__).resolve().parents[2]


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def shipped_project(tmp_path):
    key = tmp_path / "client_key"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    return load_project(ROOT, {**read_env_file(ROOT / "config" / "demo.env"), "BANK_SFTP_KEY_FILE": str(key)})


@pytest.fixture
def esb_user_url(rabbit_url, uid, shipped_project):
    """A vhost and a user of their own, granted what `python -m esb.runtime.permissions` prints."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH: users and vhosts cannot be made here")
    vhost, user = f"esb-perm-{uid}", f"esb-perm-{uid}"
    granted = permissions(shipped_project)
    _ctl("add_vhost", vhost)
    try:
        _ctl("add_user", user, "pw-" + uid)
        _ctl("set_permissions", "-p", vhost, user, granted.configure, granted.write, granted.read)
        yield f"amqp://{user}:pw-{uid}@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "delete_user", user], capture_output=True, timeout=60)
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


def test_the_granted_user_declares_publishes_reads_and_purges_what_the_shipped_routes_use(esb_user_url,
                                                                                            shipped_project):
    broker = make_broker(esb_user_url, connect_timeout=5)
    broker.start()
    try:
        broker.declare(project_topology(shipped_project, sorted(shipped_project.routes)))  # tiers: DLX amq.default
        letter = Outgoing(b"{}", "application/json", {}, "m-1")
        broker.publish("", "oa-expense-to-voucher.dlq", letter).result(10)  # how retries and dead letters go
        broker.publish("erp.events", "payment.order.approved", letter).result(10)  # esb send
        broker.publish("bank.events", "statement.camt053", letter).result(10)  # the SFTP poller
        with pytest.raises(Unroutable):  # a publish step: allowed (no queue of this vhost is bound to it)
            broker.publish("finance.review", "voucher.large", letter).result(10)
        assert broker.queue_depth("oa-expense-to-voucher.dlq") == (1, 0)
        assert broker.get("oa-expense-to-voucher.dlq").body == b"{}"  # esb dlq list / show
        broker.give_back_fetched()
        assert broker.purge("oa-expense-to-voucher.dlq") == 1  # esb dlq purge
    finally:
        broker.stop()


def test_the_granted_user_cannot_declare_a_queue_that_is_not_esbs(esb_user_url):
    connection = pika.BlockingConnection(pika.URLParameters(esb_user_url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
            connection.channel().queue_declare("payroll-import", durable=True)
    finally:
        connection.close()
