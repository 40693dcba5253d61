"""`esb run` builds the command line of its worker processes; the supervisor only runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from esb.cli.run import worker_command


def test_a_worker_runs_esb_run_with_one_worker_the_same_root_log_level_broker_and_routes():
    command = worker_command(Path("/srv/esb"), "debug", "amqp://guest:guest@rabbit:5672/%2F", ("a", "b"))
    assert command == [sys.executable, "-m", "esb.cli.main", "--root", "/srv/esb", "--log-level", "debug", "run",
                       "--workers", "1", "--supervised", "--broker", "amqp://guest:guest@rabbit:5672/%2F",
                       "--route", "a", "--route", "b"]


def test_a_worker_without_a_broker_or_routes_takes_the_project_settings():
    assert worker_command(Path("/srv/esb"), "info", None, ())[-4:] == ["run", "--workers", "1", "--supervised"]


JSON_CONFIG = "logging: {level: info, format: json}\nmetrics: {listen: 'off'}\n"
WORKER_ROUTE = "name: r\nsource: {exchange: x, binding_key: k}\nsteps:\n  - log: {message: seen}\n"


def esb_run(root: Path, *options: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "esb.cli.main", "--root", str(root), "run", *options],
                          capture_output=True, text=True, timeout=timeout)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]  # fails on any line that is not JSON


def test_start_up_problems_are_json_lines_when_logging_is_json(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "esb.yaml").write_text(JSON_CONFIG)
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.yaml").write_text("name: r\nsource: {exchange: x}\nsteps: []\n")
    result = esb_run(tmp_path)
    assert result.returncode == 2
    lines = json_lines(result.stderr)
    assert lines[-1]["event"] == "not_started"
    assert all(line["level"] == "error" for line in lines) and len(lines) >= 2
    assert any(line.get("path") == "routes/r.yaml" for line in lines)


def test_every_worker_process_logs_json_when_logging_is_json(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "esb.yaml").write_text(JSON_CONFIG)
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.yaml").write_text(WORKER_ROUTE)
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "esb.cli.main", "--root", str(tmp_path), "run",
                                    "--workers", "2", "--broker", "memory://"], stderr=stderr, text=True)
        deadline = time.monotonic() + 40
        while log.read_text().count('"worker_ready"') < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    lines = json_lines(log.read_text())
    ready = [line for line in lines if line["event"] == "worker_ready"]
    assert len({line["pid"] for line in ready}) == 2  # both workers logged, in JSON


def test_workers_never_serve_metrics_themselves_even_when_the_supervisor_serves_none(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "config").mkdir()
    config = f"logging: {{format: json}}\nmetrics: {{listen: '127.0.0.1:{port}'}}\n"
    (tmp_path / "config" / "esb.yaml").write_text(config)
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "r.yaml").write_text(WORKER_ROUTE)
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "esb.cli.main", "--root", str(tmp_path), "run",
                                    "--workers", "2", "--broker", "memory://", "--metrics-listen", "off"],
                                   stderr=stderr, text=True, env={**os.environ,
                                                                  "ESB_METRICS_LISTEN": f"127.0.0.1:{port}"})
        deadline = time.monotonic() + 40
        while log.read_text().count('"worker_ready"') < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    events = [line["event"] for line in json_lines(log.read_text())]
    assert events.count("worker_ready") == 2 and "metrics_serving" not in events
