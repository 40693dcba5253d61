"""`esb status --json` and `esb declare` on the embedded broker (RabbitMQ: tests/integration/test_declare.py)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from esb.cli.main import esb

ROUTE = "name: {name}\nsource: {{exchange: in-{uid}, binding_key: k}}\nsteps:\n  - log: {{message: seen}}\n"


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def project(tmp_path: Path, uid: str) -> Path:
    (tmp_path / "routes").mkdir()
    for name in (f"a-{uid}", f"b-{uid}-with-a-name-long-enough-to-push-the-status-table-past-eighty-columns"):
        (tmp_path / "routes" / f"{name[:10]}.yaml").write_text(ROUTE.format(name=name, uid=uid))
    return tmp_path


def esb_cli(root: Path, *args: str):
    return CliRunner().invoke(esb, ["--root", str(root), *args, "--broker", "memory://"],
                              env={"COLUMNS": None}, catch_exceptions=False)


def test_status_json_gives_each_route_s_queues_with_null_for_a_queue_not_declared_yet(project, uid):
    assert esb_cli(project, "declare", "--route", f"a-{uid}").exit_code == 0
    result = esb_cli(project, "status", "--json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["broker"] == "memory://"
    long_name = f"b-{uid}-with-a-name-long-enough-to-push-the-status-table-past-eighty-columns"
    assert status["routes"] == [
        {"route": f"a-{uid}", "queue": f"a-{uid}", "depth": 0, "consumers": 0, "dlq": 0, "retrying": 0},
        {"route": long_name, "queue": long_name, "depth": None, "consumers": None, "dlq": None, "retrying": 0}]


def test_status_table_rows_stay_whole_when_stdout_is_not_a_terminal(project, uid):
    result = esb_cli(project, "status")
    assert result.exit_code == 0
    long_name = f"b-{uid}-with-a-name-long-enough-to-push-the-status-table-past-eighty-columns"
    [row] = [line for line in result.stdout.splitlines() if long_name in line]
    assert row.count(long_name) == 2  # route and queue, on one line


def test_declare_lists_what_it_declared_and_an_unknown_route_is_refused(project, uid):
    result = esb_cli(project, "declare", "--route", f"a-{uid}")
    assert result.stdout.splitlines() == [
        f"queue     a-{uid}", f"queue     a-{uid}.dlq", f"queue     a-{uid}.retry.1000ms",
        f"queue     a-{uid}.retry.4000ms", f"queue     a-{uid}.retry.16000ms", f"queue     a-{uid}.retry.64000ms",
        f"exchange  in-{uid} (topic)", f"binding   in-{uid} --k--> a-{uid}",
        "declared 1 exchange, 6 queues and 1 binding of 1 route on memory://"]
    wrong = esb_cli(project, "declare", "--route", f"a-{uid}x")
    assert wrong.exit_code == 1 and f"no route is named 'a-{uid}x' — Did you mean 'a-{uid}'?" in wrong.stderr
