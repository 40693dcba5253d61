"""No silent embedded broker: a command that needs a broker and has none says how to give one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from esb.cli.brokers import NO_BROKER

ROUTE = "name: r\nsource: {exchange: x, binding_key: k}\nsteps:\n  - log: {message: seen}\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.yaml").write_text(ROUTE)
    (tmp_path / "msg.json").write_text("{}")
    return tmp_path


def esb(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    import os
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ESB_")}
    return subprocess.run([sys.executable, "-m", "esb.cli.main", "--root", str(root), *args], capture_output=True,
                          text=True, timeout=60, env={**environ, "ESB_METRICS_LISTEN": "off", **env})


@pytest.mark.parametrize("args", [["run", "--workers", "1"], ["status"], ["send", "r", "msg.json"],
                                  ["dlq", "list", "r"]])
def test_a_command_that_needs_a_broker_refuses_without_one_and_names_how_to_give_it(project, args):
    result = esb(project, *(str(project / a) if a.endswith(".json") else a for a in args))
    assert result.returncode in (1, 2)  # run: 2 (cannot start, do not restart), the others: 1
    assert NO_BROKER in result.stderr
    assert "ESB_BROKER_URL" in NO_BROKER and "--broker" in NO_BROKER


def test_the_embedded_broker_runs_when_asked_for_by_name(project):
    result = esb(project, "status", "--broker", "memory://")
    assert result.returncode == 0, result.stderr
    assert "r" in result.stdout


def test_a_mistyped_setting_variable_is_reported_with_the_nearest_name(project):
    result = esb(project, "status", ESB_BROKER_URI="amqp://guest:guest@127.0.0.1:5672/%2F")
    assert ("the environment variable ESB_BROKER_URI is not a setting esb knows, so it is ignored "
            "— Did you mean 'ESB_BROKER_URL'?") in result.stderr
    assert NO_BROKER in result.stderr
