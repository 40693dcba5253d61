"""The shipped adapters take their demo values from config/demo.env, loaded only when asked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from esb.cli.main import esb
from esb.errors import ConfigErrors
from esb.loading.envfile import read_env_file, with_env_file

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_VARIABLES = ["BANK_SFTP_HOST", "BANK_SFTP_PORT", "BANK_SFTP_USER", "BANK_SFTP_KEY_FILE",
                     "BANK_SFTP_KNOWN_HOSTS", "LEDGER_URL", "LEDGER_TOKEN", "OA_SOAP_URL", "OA_SOAP_USER",
                     "OA_SOAP_PASSWORD", "BANK_API_URL", "BANK_API_TOKEN"]


@pytest.fixture
def bare_environ(monkeypatch):
    """A machine without the demo values (and whatever --env-file adds is undone afterwards)."""
    saved = dict(os.environ)
    for name in [*SHIPPED_VARIABLES, "ESB_ENV_FILE"]:
        monkeypatch.delenv(name, raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_without_the_demo_env_validate_names_each_missing_variable_once(bare_environ):
    result = CliRunner().invoke(esb, ["--root", str(ROOT), "routes", "validate"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    named = [line.split("${")[1].split("}")[0] for line in lines if "is not set" in line]
    assert sorted(named) == sorted(SHIPPED_VARIABLES)
    assert len(lines) == len(SHIPPED_VARIABLES) + 1  # no second error for the empty value, then the count
    assert "demo-token" not in result.stdout


def test_no_shipped_adapter_carries_a_default_secret_or_endpoint():
    for path in (ROOT / "adapters").glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert "demo-" not in text and "127.0.0.1" not in text, path.name


def test_the_demo_env_file_holds_the_demo_values():
    values = read_env_file(ROOT / "config" / "demo.env")
    assert values["LEDGER_TOKEN"] == "demo-token"
    assert set(SHIPPED_VARIABLES) <= set(values)


def test_a_variable_already_set_wins_over_the_env_file(tmp_path):
    path = tmp_path / "demo.env"
    path.write_text("# comment\nLEDGER_URL=http://file\nexport LEDGER_TOKEN='quoted'\n")
    assert with_env_file({"LEDGER_URL": "http://real"}, path) == {"LEDGER_URL": "http://real",
                                                                 "LEDGER_TOKEN": "quoted"}


def test_a_line_that_is_not_name_equals_value_is_reported_with_its_line(tmp_path):
    path = tmp_path / "demo.env"
    path.write_text("LEDGER_URL=http://x\nthis is not a variable\n")
    with pytest.raises(ConfigErrors) as caught:
        read_env_file(path, "config/demo.env")
    assert [str(e) for e in caught.value.errors] == [
        "config/demo.env:2: a line of an environment file must be NAME=value "
        "— write e.g. LEDGER_URL=http://127.0.0.1:8081"]


def test_esb_env_file_in_the_environment_loads_the_file(bare_environ, tmp_path):
    key = tmp_path / "client_key"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    result = CliRunner().invoke(esb, ["--root", str(ROOT), "routes", "validate"],
                                env={"ESB_ENV_FILE": str(ROOT / "config" / "demo.env"),
                                     "BANK_SFTP_KEY_FILE": str(key)})
    assert (result.exit_code, result.stdout) == (0, "OK: 8 routes, 4 adapters\n")
