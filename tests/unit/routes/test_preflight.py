"""What validates is what runs: `esb routes validate` opens every adapter and checks the store as
`esb run` does, and `esb run` refuses to start (exit 2, no worker forked) on the same errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from esb.cli.main import esb
from esb.errors import ConfigErrors
from esb.loading.project import load_project

ROOT = Path(__file__).resolve().parents[3]
DEMO_ENV = ROOT / "config" / "demo.env"

SFTP = """\
name: bank-sftp
kind: sftp
host: 127.0.0.1
username: esb
private_key: keys/client_key
known_hosts: config/known_hosts
operations:
  upload_payment: {put: "/outbox/{message_id}.xml"}
inbound:
  statements:
    poll: /inbox/*.xml
    publish_to: {exchange: bank.events, routing_key: statement.camt053}
"""

REST = """\
name: ledger-rest
kind: rest
base_url: https://ledger.example.com/api
ca_file: certs/ledger-ca.pem
operations:
  create_voucher: {method: POST, path: /vouchers}
"""


@pytest.fixture
def saved_environ():
    """`--env-file` adds to this process's environment (as it must, for `esb run`'s workers): undo it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def write_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    return path


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def problems(root: Path, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_project(root, env or {})
    return [str(e) for e in caught.value.errors]


def shipped(*args: str, key: Path, env_file: bool = True):
    env = {"BANK_SFTP_KEY_FILE": str(key), "COLUMNS": "200"}
    options = ["--env-file", str(DEMO_ENV)] if env_file else []
    return CliRunner().invoke(esb, ["--root", str(ROOT), *options, *args], env=env, catch_exceptions=False)


def test_the_shipped_project_with_a_missing_key_file_fails_validate_at_the_key_line(tmp_path, saved_environ):
    result = shipped("routes", "validate", key=tmp_path / "no-such-key")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "adapters/bank-sftp.yaml:10:1: the private_key file of adapter 'bank-sftp' does not exist "
        "— point it at an unencrypted Ed25519, ECDSA or RSA key file readable by esb", "1 problem"]


def test_the_shipped_project_validates_with_the_demo_env_and_a_key(tmp_path, saved_environ):
    result = shipped("routes", "validate", key=write_key(tmp_path / "client_key"))
    assert (result.exit_code, result.stdout) == (0, "OK: 8 routes, 4 adapters\n")


def test_esb_run_with_workers_refuses_to_start_with_exit_2_before_forking(tmp_path, saved_environ, monkeypatch):
    import esb.runtime.supervisor as supervisor

    def no_fork(*args, **kwargs):
        raise AssertionError("a worker was started")
    monkeypatch.setattr(supervisor.subprocess, "Popen", no_fork)
    result = shipped("run", "--workers", "2", key=tmp_path / "no-such-key")
    assert result.exit_code == 2
    assert "adapters/bank-sftp.yaml:10:1: the private_key file of adapter 'bank-sftp' does not exist" in result.stderr
    assert "esb run: not started" in result.stderr


def test_esb_run_as_a_process_exits_2_within_seconds_on_a_missing_key(tmp_path):
    env = {**os.environ, "BANK_SFTP_KEY_FILE": str(tmp_path / "no-such-key"), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "esb.cli.main", "--root", str(ROOT), "--env-file", str(DEMO_ENV),
                           "run", "--workers", "2"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert time.monotonic() - started < 30
    assert "adapters/bank-sftp.yaml:10:1: the private_key file of adapter 'bank-sftp' does not exist" in done.stderr
    assert "worker" not in done.stderr.replace("workers", "")  # no worker_died, no supervisor_started


def test_a_missing_known_hosts_file_is_reported_at_its_line(tmp_path):
    root = write(tmp_path, {"adapters/bank-sftp.yaml": SFTP})
    write_key(root / "keys" / "client_key")
    assert problems(root) == [
        "adapters/bank-sftp.yaml:6:1: the adapter 'bank-sftp' names a known_hosts file that does not exist: "
        "config/known_hosts — pin the server's host key there (ssh-keyscan, then check the fingerprint with "
        "the server's owner)"]


def test_a_key_file_that_is_not_a_key_is_reported_at_its_line(tmp_path):
    root = write(tmp_path, {"adapters/bank-sftp.yaml": SFTP, "config/known_hosts": "", "keys/client_key": "hello"})
    assert problems(root) == [
        "adapters/bank-sftp.yaml:5:1: the private_key file of adapter 'bank-sftp' cannot be read as an Ed25519, "
        "ECDSA or RSA private key — point it at an unencrypted Ed25519, ECDSA or RSA key file readable by esb"]


def test_an_inbound_poll_with_a_wildcard_folder_is_reported_at_the_inbound(tmp_path):
    root = write(tmp_path, {"adapters/bank-sftp.yaml": SFTP.replace("/inbox/*.xml", "/in*/*.xml"),
                            "config/known_hosts": ""})
    write_key(root / "keys" / "client_key")
    [found] = problems(root)
    assert found.startswith("adapters/bank-sftp.yaml:10:3: the inbound 'statements' of 'bank-sftp' polls '/in*/*.xml'")


def test_a_missing_ca_file_is_reported_at_its_line(tmp_path):
    root = write(tmp_path, {"adapters/ledger-rest.yaml": REST})
    [found] = problems(root)
    assert found.startswith("adapters/ledger-rest.yaml:4:1: the adapter 'ledger-rest' names a ca_file that does not "
                            "exist: certs/ledger-ca.pem")


def test_a_ca_file_that_is_not_a_certificate_is_reported_at_its_line(tmp_path):
    root = write(tmp_path, {"adapters/ledger-rest.yaml": REST, "certs/ledger-ca.pem": "not a certificate"})
    [found] = problems(root)
    assert found.startswith("adapters/ledger-rest.yaml:4:1: the adapter 'ledger-rest' cannot load ca_file")


def test_a_malformed_path_template_is_reported_at_its_operation(tmp_path):
    rest = REST.replace("ca_file: certs/ledger-ca.pem\n", "").replace("path: /vouchers}", "path: \"/vouchers/{id\"}")
    [found] = problems(write(tmp_path, {"adapters/ledger-rest.yaml": rest}))
    assert found.startswith("adapters/ledger-rest.yaml:5:3: the operation 'create_voucher' of 'ledger-rest' has a "
                            "malformed template")


def test_a_store_path_under_a_file_is_reported_at_store_path(tmp_path):
    root = write(tmp_path, {"config/esb.yaml": "store:\n  kind: sqlite\n  path: blocker/idem.sqlite3\n",
                            "blocker": "a file, not a folder"})
    [found] = problems(root)
    assert found.startswith("config/esb.yaml:3:9: the idempotency store path")
    assert "which is not a folder" in found


def test_a_redis_store_url_of_another_scheme_is_reported_at_store_url(tmp_path):
    root = write(tmp_path, {"config/esb.yaml": "store:\n  kind: redis\n  url: http://127.0.0.1:6379/0\n"})
    assert problems(root) == ["config/esb.yaml:3:8: the idempotency store url must start with redis://, rediss://, "
                              "unix://, not http — write redis://HOST:6379/0 (ESB_STORE_URL)"]


def test_a_postgres_store_left_with_the_redis_url_is_reported_at_store_url(tmp_path):
    root = write(tmp_path, {"config/esb.yaml": "store:\n  kind: postgres\n  url: redis://127.0.0.1:6379/0\n"})
    assert problems(root) == ["config/esb.yaml:3:8: the idempotency store url must start with postgresql://, "
                              "postgres://, not redis — write postgresql://USER@HOST:5432/DATABASE (ESB_STORE_URL)"]


def test_a_postgres_store_url_passes_the_start_check_without_connecting(tmp_path):
    root = write(tmp_path, {"config/esb.yaml": "store:\n  kind: postgres\n  url: postgresql://esb@db.invalid/esb\n"})
    assert load_project(root, {}).settings.store_kind == "postgres"


def test_a_broker_url_esb_run_could_not_open_is_reported_at_broker_url(tmp_path):
    root = write(tmp_path, {"config/esb.yaml": "broker:\n  url: amqp//guest:guest@127.0.0.1:5672\n"})
    assert problems(root) == ["config/esb.yaml:2:8: the broker url must start with amqp://, amqps://, memory://, "
                              "not nothing — write amqp://USER:PASSWORD@HOST:5672/VHOST, several joined by commas "
                              "for a cluster, or memory:// (ESB_BROKER_URL)"]


def test_a_broker_url_list_names_the_node_at_fault_by_its_place_with_its_password_masked(tmp_path):
    urls = "amqp://esb:s3cret@rabbit1:5672/fin, amqp://esb:s3cret@rabbit2:56x2/fin, amqp://esb:s3cret@rabbit3/fin"
    root = write(tmp_path, {"config/esb.yaml": f"broker:\n  url: {urls}\n"})
    [found] = problems(root)
    assert found.startswith("config/esb.yaml:2:8: the broker url number 2 of 3, amqp://esb:***@rabbit2:56x2/fin, "
                            "cannot be read (check the host and the port)")
    assert "s3cret" not in found


def test_a_broker_url_list_takes_only_rabbitmq_nodes(tmp_path):
    [found] = problems(tmp_path, {"ESB_BROKER_URL": "amqp://rabbit1:5672/fin,memory://"})
    assert "the broker url number 2 of 2, memory://, must start with amqp://, amqps://, not memory (a list of " \
           "nodes is RabbitMQ's)" in found


def test_a_list_of_good_broker_urls_validates(tmp_path):
    urls = "amqp://u:p,w@rabbit1:5672/fin , amqps://u:p@rabbit2:5671/fin"  # a comma of a password stays in it
    assert load_project(tmp_path, {"ESB_BROKER_URL": urls}).settings.broker_url == urls


def test_validating_creates_no_store_file(tmp_path):
    root = write(tmp_path, {"config/esb.yaml": "store:\n  kind: sqlite\n  path: var/idem.sqlite3\n"})
    load_project(root, {})
    assert not (root / "var").exists()


def test_esb_run_refuses_a_broker_option_it_could_not_open_with_exit_2(tmp_path, saved_environ):
    result = shipped("run", "--workers", "2", "--broker", "amqp:/x", key=write_key(tmp_path / "client_key"))
    assert result.exit_code == 2
    assert "--broker: the broker url must start with amqp://, amqps://, memory://, not amqp" in result.stderr


def test_a_wsdl_that_cannot_be_loaded_is_reported_at_the_wsdl_line(tmp_path):
    soap = ("name: oa-soap\nkind: soap\nwsdl: adapters/wsdl/broken.wsdl\n"
            "operations:\n  ArchiveVoucher: {operation: ArchiveVoucher}\n")
    root = write(tmp_path, {"adapters/oa-soap.yaml": soap, "adapters/wsdl/broken.wsdl": "<definitions"})
    [found] = problems(root)
    assert found.startswith("adapters/oa-soap.yaml:3:1: the WSDL of 'oa-soap' cannot be loaded")


@pytest.mark.parametrize(("routes", "pollers", "running"), [
    (None, True, ["intraday_reports", "mt940_statements", "statements", "status_reports"]),
    (["mt940-to-ledger"], True, ["mt940_statements"]),
    (["oa-expense-to-voucher"], True, []),
    (["mt940-to-ledger"], "all", ["intraday_reports", "mt940_statements", "statements", "status_reports"]),
    (None, False, []),
])
def test_run_with_route_starts_only_the_pollers_that_feed_it(tmp_path, routes, pollers, running):
    from esb.loading.envfile import read_env_file
    from esb.runtime.kombu_broker import KombuBroker
    from esb.runtime.runtime import Runtime
    env = {**read_env_file(DEMO_ENV), "BANK_SFTP_KEY_FILE": str(write_key(tmp_path / "client_key"))}
    project = load_project(ROOT, env)
    runtime = Runtime(project, KombuBroker("memory://"), routes, pollers=pollers, adapters=object())
    assert sorted(p.inbound for p in runtime.pollers if p.adapter != "schedule") == running
