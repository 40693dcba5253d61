"""The audit log: an action is written before it acts and again when it ends; `esb audit` reads it back."""

from __future__ import annotations

import getpass
import json
import socket

import pytest
from click.testing import CliRunner

from esb.cli.main import esb
from esb.observability import audit
from esb.observability.audit import AuditError, AuditLog


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_action_writes_started_before_it_runs_and_ok_with_its_result_after(tmp_path):
    log = AuditLog(tmp_path / "var" / "audit.jsonl")
    with log.action("replay", route="r", what={"ids": ["m"]}) as act:
        assert [line["outcome"] for line in lines(log.path)] == ["started"]
        act.result = {"count": 1}
    started, finished = lines(log.path)
    assert started["id"] == finished["id"] and finished["outcome"] == "ok" and finished["result"] == {"count": 1}
    assert (started["user"], started["host"], started["action"], started["route"], started["what"]) == (
        getpass.getuser(), socket.gethostname(), "replay", "r", {"ids": ["m"]})
    assert started["time"].endswith("+00:00") and started["time"] <= finished["time"]
    [action] = log.actions()[0]
    assert (action.outcome, action.result, action.finished) == ("ok", {"count": 1}, finished["time"])


def test_an_action_that_fails_is_recorded_with_its_error_and_the_error_goes_on(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(RuntimeError, match="broker gone"), log.action("purge", route="r") as act:
        act.result = {"count": 0}
        raise RuntimeError("broker gone")
    [action] = log.actions()[0]
    assert (action.outcome, action.result) == ("error: broker gone", {"count": 0})


def test_an_audit_log_that_cannot_be_written_stops_the_action_before_it_runs(tmp_path):
    (tmp_path / "audit.jsonl").mkdir()
    ran = []
    with pytest.raises(AuditError, match=r"cannot write the audit log .*audit.jsonl: Is a directory"):
        with AuditLog(tmp_path / "audit.jsonl").action("replay"):
            ran.append(True)
    assert ran == []


def test_an_action_never_finished_is_unfinished_and_a_broken_line_is_reported_not_fatal(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append({"id": "a1", "time": "2025-05-01T09:00:00+00:00", "action": "replay", "outcome": "started"})
    with log.path.open("a") as out:
        out.write("{half a line\n")
    audit.record(tmp_path, "reload", {"routes": ["r"]}, "ok")  # the project's default path is var/audit.jsonl
    actions, problems = log.actions()
    assert [(a.action, a.outcome, a.finished) for a in actions] == [("replay", "unfinished", None)]
    assert problems == [f"{log.path}:2: not an audit record, skipped"]
    [reload] = AuditLog(tmp_path / "var" / "audit.jsonl").actions()[0]
    assert (reload.action, reload.what, reload.outcome, reload.finished) == ("reload", {"routes": ["r"]}, "ok",
                                                                             reload.started)


def write_log(root) -> None:
    log = AuditLog(root / "var" / "audit.jsonl")
    for n, (day, action) in enumerate([("01", "replay"), ("02", "purge"), ("03", "reload")]):
        for outcome in ("started", "ok"):
            log.append({"id": f"a{n}", "time": f"2025-05-{day}T09:00:00.000+00:00", "user": "alice", "host": "esb1",
                        "action": action, "route": "r", "what": {"ids": ["m-1", "m-2"]}, "dry_run": n == 0,
                        "outcome": outcome, "result": {"count": 2} if outcome == "ok" else None})


def test_esb_audit_json_is_one_array_with_stable_keys_filtered_by_time_and_action(tmp_path):
    write_log(tmp_path)
    result = CliRunner().invoke(esb, ["--root", str(tmp_path), "audit", "--json", "--since", "2025-05-02",
                                      "--action", "purge", "--action", "reload"])
    assert result.exit_code == 0, result.output
    actions = json.loads(result.stdout)
    assert [a["action"] for a in actions] == ["purge", "reload"]
    assert list(actions[0]) == ["id", "started", "finished", "user", "host", "action", "route", "what", "dry_run",
                                "outcome", "result"]
    assert actions[0]["started"] == "2025-05-02T09:00:00.000+00:00" and actions[0]["result"] == {"count": 2}


def test_esb_audit_prints_a_table_of_who_did_what_and_how_it_ended(tmp_path):
    write_log(tmp_path)
    result = CliRunner().invoke(esb, ["--root", str(tmp_path), "audit"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    [row] = [line for line in result.stdout.splitlines() if "2025-05-01" in line]
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [
        "2025-05-01 09:00:00", "alice@esb1", "replay (dry run)", "r", "ids=m-1,m-2", "ok: count=2"]
    assert "3 actions in" in result.stdout


def test_esb_audit_since_takes_an_age_and_refuses_what_is_not_a_time(tmp_path):
    write_log(tmp_path)
    recent = CliRunner().invoke(esb, ["--root", str(tmp_path), "audit", "--json", "--since", "2h"])
    assert recent.exit_code == 0 and json.loads(recent.stdout) == []
    wrong = CliRunner().invoke(esb, ["--root", str(tmp_path), "audit", "--since", "yesterday"])
    assert wrong.exit_code == 2 and "'yesterday' is not a time" in wrong.stderr
