"""deploy/: the systemd unit, the env file and the production README agree with the code they describe."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from esb.loading import settings_table
from esb.loading.config import SCHEMA, load_settings, setting_variables
from esb.loading.envfile import read_env_file
from esb.loading.project import load_project
from esb.runtime.permissions import permissions
from esb.runtime.runtime import project_topology
from esb.runtime.supervisor import CANNOT_START, CRASH_LOOP, HARD_EXIT_MARGIN

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "esb@.service"
REGENERATE = "run `make deploy-docs` (python -m esb.loading.settings_table --write deploy/README.md deploy/esb.env)"


def test_the_settings_table_in_the_production_readme_is_what_the_config_schema_renders():
    readme = (DEPLOY / "README.md").read_text()
    assert settings_table.generated(readme, settings_table.TABLE_MARKERS) == settings_table.render_table(), REGENERATE


def test_the_env_file_lists_every_esb_setting_as_the_config_schema_renders_it():
    text = (DEPLOY / "esb.env").read_text()
    assert settings_table.generated(text, settings_table.ENV_MARKERS) == settings_table.render_env(), REGENERATE
    named = set(re.findall(r"^#?(ESB_[A-Z0-9_]+)=", text, re.MULTILINE))
    assert set(setting_variables()) <= named


def test_every_setting_has_a_description_and_a_built_in_default():
    undocumented = [row.variable for row in settings_table.rows() if not row.description or row.default == "?"]
    assert undocumented == [], "describe each in esb/loading/config.py's SCHEMA (`description`), then " + REGENERATE


def test_a_setting_added_to_the_schema_without_docs_makes_the_deploy_files_fall_behind(monkeypatch):
    monkeypatch.setitem(SCHEMA["properties"], "undocumented", {
        "type": "object", "properties": {"path": {"type": "string"}}})
    rows = {row.variable: row for row in settings_table.rows()}
    assert (rows["ESB_UNDOCUMENTED_PATH"].description, rows["ESB_UNDOCUMENTED_PATH"].default) == ("", "?")
    readme = (DEPLOY / "README.md").read_text()
    assert settings_table.generated(readme, settings_table.TABLE_MARKERS) != settings_table.render_table()


def test_the_table_shows_the_built_in_defaults_as_an_operator_writes_them():
    rows = {row.variable: row for row in settings_table.rows()}
    assert [rows[name].default for name in ("ESB_LIMITS_MAX_BODY", "ESB_LOGGING_LEVEL", "ESB_DELIVERY_LIMIT",
                                            "ESB_SECURITY_STATE_KEY", "ESB_METRICS_LISTEN")] == [
        "10MB", "info", "3", "unset", "127.0.0.1:9464"]


def test_regenerating_rewrites_only_what_lies_between_the_markers(tmp_path):
    path = tmp_path / "esb.env"
    path.write_text(f"KEEP=1\n{settings_table.ENV_MARKERS[0]}\n#ESB_OLD=x\n{settings_table.ENV_MARKERS[1]}\nTAIL=2\n")
    assert settings_table.main(["--write", str(path)]) == 0
    assert path.read_text() == (f"KEEP=1\n{settings_table.ENV_MARKERS[0]}\n{settings_table.render_env()}\n"
                                f"{settings_table.ENV_MARKERS[1]}\nTAIL=2\n")


def test_the_env_file_reads_as_esb_reads_it_and_sets_json_logs():
    values = read_env_file(DEPLOY / "esb.env")
    assert values == {"ESB_LOGGING_FORMAT": "json"}  # everything else is for the operator to uncomment and fill
    assert load_settings(ROOT, values).log_format == "json"


def test_the_env_file_names_every_variable_the_shipped_assets_need():
    needed = set()
    for path in [*(ROOT / "adapters").glob("*.yaml"), *(ROOT / "routes").glob("*.yaml"), ROOT / "config" / "esb.yaml"]:
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        needed |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    named = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", (DEPLOY / "esb.env").read_text(), re.MULTILINE))
    assert needed and sorted(needed - named) == []


def _unit_settings() -> dict[str, str]:
    return dict(re.findall(r"^(\w+)=(.*)$", UNIT.read_text(), re.MULTILINE))


def test_systemd_stops_the_unit_only_after_the_drain_and_the_hard_exit_margin():
    unit = _unit_settings()
    drain = float(re.search(r"--drain-timeout (\d+)", unit["ExecStart"]).group(1))
    assert float(unit["TimeoutStopSec"]) > drain + HARD_EXIT_MARGIN
    assert unit["KillMode"] == "mixed"  # SIGTERM to the supervisor, which drains its workers


def test_systemd_restarts_after_a_crash_but_not_after_cannot_start_or_a_crash_loop():
    unit = _unit_settings()
    assert unit["Restart"] == "on-failure"
    assert set(unit["RestartPreventExitStatus"].split()) == {str(CANNOT_START), str(CRASH_LOOP)}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("name", ["esb@.service", "esb@finance.service"])
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path, name):
    # verify needs ExecStart's binary to exist: the unit's /opt/esb/bin/esb becomes this virtualenv's esb
    esb = Path(sys.executable).parent / "esb"
    (tmp_path / name).write_text(UNIT.read_text().replace("/opt/esb/bin/esb", str(esb)))
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True,
                            timeout=60)
    # unknown keys and unparsable values are only warnings (exit 0): any line about the unit fails too
    about_unit = [line for line in (result.stdout + result.stderr).splitlines() if name in line]
    assert (result.returncode, about_unit) == (0, [])


@pytest.fixture
def shipped_project(tmp_path):
    key = tmp_path / "client_key"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    env = {**read_env_file(ROOT / "config" / "demo.env"), "BANK_SFTP_KEY_FILE": str(key)}
    return load_project(ROOT, env)


def test_the_readme_grants_rabbitmq_exactly_what_the_shipped_routes_need(shipped_project):
    command = permissions(shipped_project).rabbitmqctl("finance", "esb")
    assert command in (DEPLOY / "README.md").read_text(), \
        f"paste `python -m esb.runtime.permissions` into deploy/README.md: {command}"


def test_every_exchange_and_queue_of_the_shipped_routes_is_granted_and_nothing_else(shipped_project):
    granted = permissions(shipped_project)
    topology = project_topology(shipped_project, sorted(shipped_project.routes))
    exchanges = [name for name, _ in topology.exchanges]
    queues = [queue.name for queue in topology.queues]
    expected = {"oa-expense-to-voucher.dlq", "oa-expense-to-voucher.retry.1000ms", "finance.review"}
    assert expected <= {*queues, *exchanges}
    for name in exchanges + queues:
        assert re.fullmatch(granted.configure, name) and re.fullmatch(granted.read, name), name
        assert re.fullmatch(granted.write, name), name
    assert re.fullmatch(granted.write, "amq.default")  # retries and dead letters go through it
    for other in ("amq.default", "payroll.events", "oa-expense-to-voucher.other", "x.oa-expense-to-voucher"):
        assert not re.fullmatch(granted.configure, other), other
