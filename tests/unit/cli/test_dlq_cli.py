"""`esb send`, `esb dlq ...` and `esb status` against a RabbitMQ project written into tmp_path."""

from __future__ import annotations

import dataclasses
import getpass
import json
import socket
import textwrap
import time
import uuid
from pathlib import Path

import pika
import pytest
from click.testing import CliRunner

from esb.cli.main import configure_logging, esb
from esb.cli.send import route_target
from esb.loading.project import load_project
from esb.runtime import dlq
from esb.runtime.connect import connected, make_broker
from esb.runtime.runtime import Runtime
from esb.runtime.state import load_key
from esb.runtime.status import status
from esb.store import SqliteStore
from esb.testing.http import StubHttpServer, StubResponse

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
ENV = {"COLUMNS": "200"}

ROUTE = """\
name: r-{uid}
source: {{exchange: in-{uid}, binding_key: "#"}}
concurrency: 2
retry: {{attempts: 3, in_process: 0, backoff: {{initial: 1s, multiplier: 2, max: 2s}}}}
steps:
  - label: create-voucher
    to: {{adapter: ledger, operation: create_voucher, into: receipt}}
  - label: archive
    to: {{adapter: ledger, operation: archive}}
  - publish: {{exchange: out-{uid}, routing_key: done}}
"""

ADAPTER = """\
name: ledger
kind: rest
base_url: {url}
timeout: 2s
operations:
  create_voucher: {{method: POST, path: /vouchers}}
  archive: {{method: POST, path: /archive}}
"""


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def ledger():
    with StubHttpServer() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, uid: str, ledger) -> Path:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.fail("RabbitMQ is not running on 127.0.0.1:5672: start it with `rabbitmq-server -detached`",
                    pytrace=False)
    files = {"config/esb.yaml": f"broker: {{url: '{RABBIT_URL}'}}\nstore: {{path: {tmp_path / 'idem.sqlite3'}}}\n",
             "adapters/ledger.yaml": ADAPTER.format(url=ledger.url), "routes/r.yaml": ROUTE.format(uid=uid),
             "claim.json": '{"claim_id": "C-1", "amount": 10.05}'}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    yield tmp_path
    with pika.BlockingConnection(pika.URLParameters(RABBIT_URL)) as connection:
        channel = connection.channel()
        for queue in (f"r-{uid}", f"r-{uid}.dlq", f"r-{uid}.retry.1000ms", f"r-{uid}.retry.2000ms"):
            channel.queue_delete(queue)
        for exchange in (f"in-{uid}", f"out-{uid}"):
            channel.exchange_delete(exchange)


def esb_cli(root: Path, *args: str, stdin: str | None = None):
    return CliRunner().invoke(esb, ["--root", str(root), *args], env=ENV, input=stdin, catch_exceptions=False)


def dead_letters(root: Path, uid: str, ledger, *message_ids: str, failing: str = "/vouchers") -> None:
    """Run the route until each message (sent with `esb send`) is dead-lettered by a 400, then stop it."""
    configure_logging("warning")  # the runtime's log lines go to stderr, never into a command's stdout
    ledger.set_default(lambda request: StubResponse(400 if request.path == failing else 201, {"voucher_no": "V-1"}))
    runtime = Runtime(load_project(root, {}), make_broker(RABBIT_URL), store=SqliteStore(str(root / "idem.sqlite3")))
    runtime.start()
    try:
        before = dead_letter_count(root, uid)
        for message_id in message_ids:
            assert esb_cli(root, "send", f"r-{uid}", str(root / "claim.json"), "--id", message_id,
                           "--header", "source=oa").stdout == f"{message_id}\n"
        wait_for_dead_letters(root, uid, before + len(message_ids))
    finally:
        runtime.stop(drain_timeout=10)


def dead_letter_count(root: Path, uid: str) -> int:
    with connected(RABBIT_URL) as broker:
        depth = broker.queue_depth(f"r-{uid}.dlq")
    return 0 if depth is None else depth[0]


def browse(root: Path, uid: str) -> list[dlq.DeadLetter]:
    with connected(RABBIT_URL) as broker:
        return dlq.browse(broker, f"r-{uid}", seal=load_key(root, None))


def wait_for_dead_letters(root: Path, uid: str, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(browse(root, uid)) == count:
            return
        time.sleep(0.1)
    raise AssertionError(f"r-{uid}.dlq never held {count} dead letters")


def test_send_publishes_the_file_to_the_route_with_its_headers_and_prints_the_message_id(project, uid, ledger):
    dead_letters(project, uid, ledger, f"M-{uid}")
    [letter] = browse(project, uid)
    assert letter.id == f"M-{uid}" and letter.content_type == "application/json"
    assert dict(letter.headers) == {"source": "oa"}
    assert letter.body == b'{"claim_id": "C-1", "amount": 10.05}'


def test_send_to_an_exchange_where_nothing_is_bound_fails_saying_so(project, uid, ledger):
    dead_letters(project, uid, ledger, f"M-{uid}")  # declares the route's exchanges
    result = esb_cli(project, "send", "--exchange", f"out-{uid}", "--key", "nobody", str(project / "claim.json"))
    assert result.exit_code == 1
    assert f"no queue is bound to exchange 'out-{uid}' for key 'nobody'" in result.stderr


def test_send_uses_the_binding_key_when_it_names_one_key_else_the_route_queue(project, uid):
    route = load_project(project, {}).routes[f"r-{uid}"]
    assert route_target(route) == ("", f"r-{uid}")
    exact = dataclasses.replace(route, source=dataclasses.replace(route.source, binding_key="expense.approved"))
    assert route_target(exact) == (f"in-{uid}", "expense.approved")
    assert route_target(route, key="expense.rejected") == (f"in-{uid}", "expense.rejected")


def test_send_without_a_route_or_exchange_key_is_a_usage_error(project):
    result = esb_cli(project, "send", str(project / "claim.json"))
    assert result.exit_code == 2 and "esb send ROUTE FILE" in result.stderr


def test_dlq_list_shows_id_age_step_error_class_and_reason(project, uid, ledger):
    dead_letters(project, uid, ledger, f"A-{uid}", f"B-{uid}")
    result = esb_cli(project, "dlq", "list", f"r-{uid}")
    assert result.exit_code == 0
    for text in ("id", "age", "step", "error class", "reason", f"A-{uid}", f"B-{uid}", "create-voucher",
                 "permanent", "HTTP 400", f"2 dead letters in r-{uid}.dlq"):
        assert text in result.stdout
    assert len(browse(project, uid)) == 2  # listing leaves them in place


def test_dlq_show_tells_why_and_pretty_prints_the_original_body(project, uid, ledger):
    dead_letters(project, uid, ledger, f"S-{uid}", failing="/archive")
    result = esb_cli(project, "dlq", "show", f"S-{uid}")
    assert result.exit_code == 0
    out = result.stdout
    for text in (f"id:            S-{uid}", f"route:         r-{uid}", "failed step:   archive  (step index 1)",
                 "error class:   permanent  (PermanentError)", "attempts:      1", "compensation:  none",
                 "headers:       source=oa", "first failure: 20", "last failure:  20",
                 'body (application/json, 36 bytes):\n  {\n    "claim_id": "C-1",\n    "amount": 10.05\n  }',
                 "body at step archive (application/json"):
        assert text in out
    assert "HTTP 400" in out


def test_dlq_show_of_an_unknown_id_fails(project, uid):
    result = esb_cli(project, "dlq", "show", "nope", "--broker", RABBIT_URL)
    assert result.exit_code == 1 and f"no dead letter nope in the DLQ of r-{uid}" in result.stderr


def test_dlq_list_of_a_route_that_never_ran_names_the_queue_and_masks_the_password(project, uid):
    result = esb_cli(project, "dlq", "list", f"r-{uid}")
    assert result.exit_code == 1
    assert f"there is no queue 'r-{uid}.dlq' on amqp://guest:***@127.0.0.1:5672/%2F" in result.stderr


def test_dlq_replay_moves_the_dead_letter_back_to_the_route_queue(project, uid, ledger):
    dead_letters(project, uid, ledger, f"R-{uid}", f"K-{uid}")
    result = esb_cli(project, "dlq", "replay", f"r-{uid}", "--id", f"R-{uid}")
    assert result.exit_code == 0 and result.stdout.endswith("replayed 1\n")
    assert [letter.id for letter in browse(project, uid)] == [f"K-{uid}"]
    with connected(RABBIT_URL) as broker:
        [row] = status(broker, load_project(project, {}))
    assert (row.messages, row.dead_letters) == (1, 1)


def test_dlq_replay_from_a_step_other_than_the_failed_one_is_refused(project, uid, ledger):
    dead_letters(project, uid, ledger, f"F-{uid}", failing="/archive")
    result = esb_cli(project, "dlq", "replay", f"r-{uid}", "--all", "--from-step", "create-voucher")
    assert result.exit_code == 1
    assert "failed at step 'archive', not 'create-voucher'" in result.stderr
    assert len(browse(project, uid)) == 1


def test_dlq_replay_needs_ids_or_all(project, uid):
    result = esb_cli(project, "dlq", "replay", f"r-{uid}")
    assert result.exit_code == 2
    assert "give --id ID (repeatable), a filter (--error-class, --step, --since) or --all" in result.stderr


def test_dlq_purge_asks_first_and_removes_only_the_named_dead_letter(project, uid, ledger):
    dead_letters(project, uid, ledger, f"P-{uid}", f"Q-{uid}")
    declined = esb_cli(project, "dlq", "purge", f"r-{uid}", "--id", f"P-{uid}", stdin="n\n")
    assert declined.exit_code == 1 and "guest:***@" in declined.stdout and ":guest@" not in declined.stdout
    assert len(browse(project, uid)) == 2
    result = esb_cli(project, "dlq", "purge", f"r-{uid}", "--id", f"P-{uid}", "--yes")
    assert result.exit_code == 0 and result.stdout == "purged 1\n"
    assert [letter.id for letter in browse(project, uid)] == [f"Q-{uid}"]


def test_status_shows_depth_consumers_dead_letters_and_retrying_without_the_password(project, uid, ledger):
    dead_letters(project, uid, ledger, f"T-{uid}")
    result = esb_cli(project, "status")
    assert result.exit_code == 0
    [row] = [line for line in result.stdout.splitlines() if f"r-{uid}" in line]
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [f"r-{uid}", f"r-{uid}", "0", "0", "1", "0"]
    assert "amqp://guest:***@127.0.0.1:5672/%2F" in result.stdout and ":guest@" not in result.stdout


# -- replay once, filters, dry run, audit (issue 11, point 7) ----------------------------------

def run_until_dead(root: Path, uid: str, ledger, count: int) -> None:
    """Run the route on what waits in its queue until its DLQ holds `count` dead letters."""
    configure_logging("warning")
    ledger.set_default(lambda request: StubResponse(400, {"error": "account 9999 does not exist"}))
    runtime = Runtime(load_project(root, {}), make_broker(RABBIT_URL), store=SqliteStore(str(root / "idem.sqlite3")))
    runtime.start()
    try:
        wait_for_dead_letters(root, uid, count)
    finally:
        runtime.stop(drain_timeout=10)


def copy_first_dead_letter(uid: str) -> None:
    """Put a second copy of the first dead letter into the DLQ, as a replay whose ack was lost leaves one."""
    with pika.BlockingConnection(pika.URLParameters(RABBIT_URL)) as connection:
        channel = connection.channel()
        method, properties, body = channel.basic_get(f"r-{uid}.dlq")
        channel.basic_publish("", f"r-{uid}.dlq", body, properties)
        channel.basic_nack(method.delivery_tag, requeue=True)


def audit_actions(root: Path) -> list[dict]:
    result = esb_cli(root, "audit", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_a_second_replay_of_a_replayed_id_says_when_and_by_whom_and_fails(project, uid, ledger):
    dead_letters(project, uid, ledger, f"R-{uid}")
    assert esb_cli(project, "dlq", "replay", f"r-{uid}", "--id", f"R-{uid}").stdout == "replayed 1\n"
    again = esb_cli(project, "dlq", "replay", f"r-{uid}", "--id", f"R-{uid}")
    assert again.exit_code == 1 and again.stdout == "replayed 0\n"
    assert f"R-{uid} is not in r-{uid}.dlq: it was replayed at 20" in again.stderr
    assert f"by {getpass.getuser()}" in again.stderr


def test_a_copy_of_a_replayed_dead_letter_stays_in_the_dlq_unless_replayed_again(project, uid, ledger):
    dead_letters(project, uid, ledger, f"D-{uid}")
    copy_first_dead_letter(uid)
    assert [letter.id for letter in browse(project, uid)] == [f"D-{uid}", f"D-{uid}"]
    result = esb_cli(project, "dlq", "replay", f"r-{uid}", "--all")
    assert result.exit_code == 1 and result.stdout == "replayed 1\n"
    assert f"D-{uid} (dead-lettered 20" in result.stderr
    assert "was already replayed at 20" in result.stderr and "give --again to replay it again" in result.stderr
    assert [letter.id for letter in browse(project, uid)] == [f"D-{uid}"]
    forced = esb_cli(project, "dlq", "replay", f"r-{uid}", "--id", f"D-{uid}", "--again")
    assert forced.exit_code == 0 and forced.stdout == "replayed 1\n"
    assert browse(project, uid) == []


def test_a_message_that_died_again_after_its_replay_is_replayed_without_again(project, uid, ledger):
    dead_letters(project, uid, ledger, f"A-{uid}")
    first = browse(project, uid)[0].last_failure
    assert esb_cli(project, "dlq", "replay", f"r-{uid}", "--id", f"A-{uid}").exit_code == 0
    run_until_dead(project, uid, ledger, 1)  # the fix did not hold: it died again
    assert browse(project, uid)[0].last_failure != first
    result = esb_cli(project, "dlq", "replay", f"r-{uid}", "--id", f"A-{uid}")
    assert result.exit_code == 0 and result.stdout == "replayed 1\n" and result.stderr == ""


def test_replay_filters_by_step_error_class_and_time_and_a_dry_run_touches_nothing(project, uid, ledger):
    dead_letters(project, uid, ledger, f"V-{uid}")                       # dies at create-voucher
    dead_letters(project, uid, ledger, f"W-{uid}", failing="/archive")   # dies at archive
    dry = esb_cli(project, "dlq", "replay", f"r-{uid}", "--step", "archive", "--error-class", "permanent",
                  "--since", "1h", "--dry-run")
    assert dry.exit_code == 0
    assert dry.stdout.splitlines()[0].startswith(f"would replay W-{uid}  (step archive, permanent, dead-lettered 20")
    assert dry.stdout.endswith("would replay 1\n")
    assert sorted(letter.id for letter in browse(project, uid)) == [f"V-{uid}", f"W-{uid}"]
    later = esb_cli(project, "dlq", "replay", f"r-{uid}", "--since", "2999-01-01T00:00")
    assert later.exit_code == 0 and later.stdout == "replayed 0\n"
    none = esb_cli(project, "dlq", "replay", f"r-{uid}", "--error-class", "transient")
    assert none.stdout == "replayed 0\n"
    result = esb_cli(project, "dlq", "replay", f"r-{uid}", "--step", "archive")
    assert result.exit_code == 0 and result.stdout == "replayed 1\n"
    assert [letter.id for letter in browse(project, uid)] == [f"V-{uid}"]


def test_replay_and_purge_are_audited_with_who_what_and_the_outcome(project, uid, ledger):
    dead_letters(project, uid, ledger, f"X-{uid}", f"Y-{uid}")
    esb_cli(project, "dlq", "replay", f"r-{uid}", "--id", f"X-{uid}", "--dry-run")
    esb_cli(project, "dlq", "replay", f"r-{uid}", "--id", f"X-{uid}")
    esb_cli(project, "dlq", "purge", f"r-{uid}", "--all", "--yes")
    dry, replay, purge = audit_actions(project)
    assert (dry["action"], dry["dry_run"], dry["outcome"], dry["result"]["ids"]) == ("replay", True, "ok", [f"X-{uid}"])
    assert replay["user"] == getpass.getuser() and replay["host"] == socket.gethostname()
    assert replay["route"] == f"r-{uid}" and replay["dry_run"] is False and replay["outcome"] == "ok"
    assert replay["what"] == {"ids": [f"X-{uid}"], "all": False, "error_class": [], "step": [], "since": None,
                              "from_step": None, "again": False}
    assert replay["result"] == {"count": 1, "ids": [f"X-{uid}"], "skipped": [], "missing": []}
    assert (purge["action"], purge["what"], purge["result"], purge["outcome"]) == (
        "purge", {"ids": [], "all": True}, {"count": 1}, "ok")
    assert replay["started"] <= replay["finished"] <= purge["started"]
    table = esb_cli(project, "audit", "--action", "purge")
    assert "purge" in table.stdout and "count=1" in table.stdout and "1 action in" in table.stdout


def test_a_failed_replay_is_audited_with_its_error(project, uid, ledger):
    dead_letters(project, uid, ledger, f"F-{uid}", failing="/archive")
    esb_cli(project, "dlq", "replay", f"r-{uid}", "--all", "--from-step", "create-voucher")
    [action] = audit_actions(project)
    assert action["outcome"].startswith("error: dead letter F-") and "failed at step 'archive'" in action["outcome"]


def test_replay_refuses_before_acting_when_the_audit_log_cannot_be_written(project, uid, ledger):
    dead_letters(project, uid, ledger, f"N-{uid}")
    (project / "var" / "audit-dir").mkdir(parents=True)
    result = CliRunner().invoke(esb, ["--root", str(project), "dlq", "replay", f"r-{uid}", "--all"],
                                env={**ENV, "ESB_AUDIT_PATH": "var/audit-dir"})
    assert result.exit_code == 1
    assert f"cannot write the audit log {project}/var/audit-dir: Is a directory" in result.stderr
    assert [letter.id for letter in browse(project, uid)] == [f"N-{uid}"]


# -- machine output and id prefixes (issue 11, point 13) ----------------------------------------

def test_dlq_list_json_is_an_array_with_stable_keys_and_the_whole_reason(project, uid, ledger):
    dead_letters(project, uid, ledger, f"J-{uid}", f"K-{uid}")
    result = esb_cli(project, "dlq", "list", f"r-{uid}", "--json")
    assert result.exit_code == 0
    letters = json.loads(result.stdout)
    assert [letter["id"] for letter in letters] == [f"J-{uid}", f"K-{uid}"]
    assert list(letters[0]) == ["id", "route", "sealed", "step", "error_class", "reason", "attempts", "first_failure",
                                "last_failure", "age_seconds", "compensation"]
    assert letters[0]["step"] == "create-voucher" and letters[0]["error_class"] == "permanent"
    assert letters[0]["sealed"] is True and letters[0]["attempts"] == 1 and 0 <= letters[0]["age_seconds"] < 60
    assert "HTTP 400" in letters[0]["reason"]


def test_dlq_show_json_holds_the_body_digit_for_digit_and_the_headers(project, uid, ledger):
    dead_letters(project, uid, ledger, f"B-{uid}", failing="/archive")
    result = esb_cli(project, "dlq", "show", f"B-{uid}", "--json")
    assert result.exit_code == 0
    letter = json.loads(result.stdout)
    assert letter["body"] == '{"claim_id": "C-1", "amount": 10.05}' and letter["body_encoding"] == "utf-8"
    assert letter["headers"] == {"source": "oa"} and letter["step"] == "archive" and letter["resume_step"] == 1
    assert letter["content_type"] == "application/json" and letter["exception"] == "PermanentError"
    assert letter["failed_body_encoding"] == "utf-8" and "V-1" in letter["failed_body"]


def test_dlq_show_takes_a_unique_id_prefix_and_lists_the_candidates_of_an_ambiguous_one(project, uid, ledger):
    dead_letters(project, uid, ledger, f"{uid}-alpha", f"{uid}-beta")
    result = esb_cli(project, "dlq", "show", f"{uid}-a")
    assert result.exit_code == 0 and f"id:            {uid}-alpha" in result.stdout
    ambiguous = esb_cli(project, "dlq", "show", f"{uid}-")
    assert ambiguous.exit_code == 1
    assert f"the id prefix '{uid}-' names 2 dead letters; give more of the id:" in ambiguous.stderr
    assert f"  {uid}-alpha  (route r-{uid})\n  {uid}-beta  (route r-{uid})" in ambiguous.stderr
