"""Webhooks in (issue 13, point 1): `esb run`'s server on RabbitMQ answers 202 only once the message
is in the route's queue, 503 when the broker cannot take it, and a re-sent webhook is one effect."""

from __future__ import annotations

import datetime
import json
import time

import pika
import pytest
import requests
from integration_helpers import Bus, delete_queues, write_project
from test_bus import LEDGER_ADAPTER, voucher_steps

from esb.inbound.auth import sign
from esb.inbound.http import serve_webhooks
from esb.loading.project import load_project
from esb.runtime.connect import make_broker
from esb.runtime.runtime import Runtime
from esb.store import SqliteStore

SECRET = "webhook-secret-for-tests"


def hook_route(uid: str, steps: str) -> str:
    return f"""\
name: hook-{uid}
source:
  http:
    path: /hooks/{uid}
    auth: {{hmac: {{secret_env: HOOK_SECRET}}}}
    idempotency_header: Idempotency-Key
concurrency: 4
retry: {{attempts: 2, in_process: 0, backoff: {{initial: 200ms, multiplier: 1, max: 1s}}}}
max_body: 1KB
steps:
{steps}"""


PASS = "  - label: noted\n    log: {message: webhook taken}\n"


@pytest.fixture
def project_of(tmp_path, rabbit_url, uid):
    def make(files: dict[str, str]):
        files = {"config/esb.yaml": "http: {listen: '127.0.0.1:0'}\n", **files}
        return load_project(write_project(tmp_path, files), {"HOOK_SECRET": SECRET})
    yield make
    delete_queues(rabbit_url, uid)


@pytest.fixture
def broker(rabbit_url):
    broker = make_broker(rabbit_url)
    broker.start()
    yield broker
    broker.stop()


def post(server, uid: str, body: bytes, scheme: str = "http", at: float | None = None,
         **headers) -> requests.Response:
    host, port = server.address
    stamp = str(int(time.time() if at is None else at))
    headers = {"X-Timestamp": stamp, "X-Signature": sign(SECRET, stamp, body),
               "Content-Type": "application/json", **headers}
    return requests.post(f"{scheme}://{host}:{port}/hooks/{uid}", data=body, headers=headers, timeout=10,
                         verify=headers.pop("verify", True))


def claim(claim_id: str) -> bytes:
    return json.dumps({"claim_id": claim_id, "voucher_no": f"OA-{claim_id}",
                       "lines": [{"account": "6601", "amount": 100.00}]}).encode()


def test_a_webhook_is_answered_202_only_when_its_message_is_already_in_the_queue(project_of, broker, uid):
    server = serve_webhooks(project_of({"routes/hook.yaml": hook_route(uid, PASS)}), broker)
    try:
        answer = post(server, uid, claim("C-1"), **{"Idempotency-Key": "oa-C-1"})
        depth = broker.queue_depth(f"hook-{uid}")  # read the moment the 202 arrived
    finally:
        server.stop()
    assert answer.status_code == 202 and answer.json() == {"message_id": "oa-C-1"}
    assert depth == (1, 0)


def test_a_webhook_the_broker_cannot_take_is_answered_503(project_of, broker, rabbit_url, uid):
    server = serve_webhooks(project_of({"routes/hook.yaml": hook_route(uid, PASS)}), broker)
    try:
        with pika.BlockingConnection(pika.URLParameters(rabbit_url)) as connection:
            connection.channel().queue_delete(f"hook-{uid}")  # unroutable now: the broker returns it
        unroutable = post(server, uid, claim("C-2"))
        broker.stop()
        stopped = post(server, uid, claim("C-3"))
    finally:
        server.stop()
    assert unroutable.status_code == 503 and "send it again" in unroutable.json()["error"]
    assert stopped.status_code == 503


def test_a_body_over_max_body_is_answered_413_by_the_server(project_of, broker, uid):
    server = serve_webhooks(project_of({"routes/hook.yaml": hook_route(uid, PASS)}), broker)
    try:
        answer = post(server, uid, b'{"x": "' + b"y" * 5000 + b'"}')
        depth = broker.queue_depth(f"hook-{uid}")
    finally:
        server.stop()
    assert answer.status_code == 413 and "limit of 1,024" in answer.json()["error"]
    assert depth == (0, 0)


def test_a_webhook_sent_twice_with_one_idempotency_key_posts_one_voucher(project_of, rabbit_url, stand_in, uid):
    project = project_of({"adapters/ledger.yaml": LEDGER_ADAPTER.format(url=stand_in.url),
                          "routes/hook.yaml": hook_route(uid, voucher_steps(uid))})
    bus = Bus(rabbit_url)
    bus.listen(f"seen-{uid}", f"out-{uid}")
    runtime = Runtime(project, make_broker(rabbit_url), store=SqliteStore(str(project.root / "idem.sqlite3")))
    runtime.start()
    server = serve_webhooks(project, runtime.broker)
    try:
        first = post(server, uid, claim("C-7"), **{"Idempotency-Key": "oa-C-7"})
        bus.wait_for(f"seen-{uid}", 1)
        second = post(server, uid, claim("C-7"), at=time.time() + 2,  # re-signed: a new timestamp
                      **{"Idempotency-Key": "oa-C-7"})
        bus.settle(1.5)
    finally:
        server.stop()
        runtime.stop(10)
        bus.close()
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == second.json() == {"message_id": "oa-C-7"}
    assert [r.path for r in stand_in.server.requests if r.method == "POST"] == ["/vouchers", "/entries"]
    assert len(bus.received[f"seen-{uid}"]) == 1


def self_signed(folder) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(key, hashes.SHA256()))
    (folder / "tls").mkdir()
    (folder / "tls/cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls/key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return str(folder / "tls/cert.pem"), str(folder / "tls/key.pem")


def test_webhooks_are_served_over_tls_when_a_certificate_is_set(project_of, broker, tmp_path, uid):
    cert, _ = self_signed(tmp_path)
    project = project_of({"config/esb.yaml": "http: {listen: '127.0.0.1:0', tls_cert: tls/cert.pem, "
                                             "tls_key: tls/key.pem}\n", "routes/hook.yaml": hook_route(uid, PASS)})
    server = serve_webhooks(project, broker)
    try:
        answer = post(server, uid, claim("C-9"), scheme="https", verify=cert)
        with pytest.raises(requests.ConnectionError):
            post(server, uid, claim("C-10"))  # plain HTTP on the TLS port
    finally:
        server.stop()
    assert answer.status_code == 202
