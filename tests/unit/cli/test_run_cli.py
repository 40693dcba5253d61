"""`esb run` builds the command line of its worker processes; the supervisor only runs it."""

from __future__ import annotations

import sys
from pathlib import Path

from esb.cli.run import worker_command


def test_a_worker_runs_esb_run_with_one_worker_the_same_root_log_level_broker_and_routes():
    command = worker_command(Path("/srv/esb"), "debug", "amqp://guest:guest@rabbit:5672/%2F", ("a", "b"))
    assert command == [sys.executable, "-m", "esb.cli.main", "--root", "/srv/esb", "--log-level", "debug", "run",
                       "--workers", "1", "--broker", "amqp://guest:guest@rabbit:5672/%2F", "--route", "a",
                       "--route", "b"]


def test_a_worker_without_a_broker_or_routes_takes_the_project_settings():
    assert worker_command(Path("/srv/esb"), "info", None, ())[-3:] == ["run", "--workers", "1"]
