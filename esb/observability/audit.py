"""The audit log of operator actions (replay, purge, reload): who, when, what and the outcome.

One JSON object per line, appended to `audit.path` of config/esb.yaml (default var/audit.jsonl,
`ESB_AUDIT_PATH`). An action writes two lines that share an `id`:

    {"id": "…", "time": "2025-05-01T09:00:00.120+00:00", "user": "alice", "host": "esb1",
     "action": "replay", "route": "oa-expense", "what": {"ids": ["M-1"], …}, "dry_run": false,
     "outcome": "started", "result": null}
    {… the same id, user, action …, "time": "…09:00:01.400+00:00", "outcome": "ok", "result": {"count": 1, …}}

The first line is the gate: it is written (and fsynced) before the action touches anything, and
if it cannot be written the action fails without acting, so nothing happens that the log cannot
account for. The second says `ok` or `error: <why>`; if the action happened but that line could
not be written, the command fails loudly and `esb audit` shows the action `unfinished`.

From code (the hot reload records `reload` this way):

    log = audit.for_project(root)
    with log.action("purge", route="r", what={"ids": ids}) as act:   # raises AuditError: nothing done
        act.result = {"count": purge(...)}
    audit.record(root, "reload", {"routes": ["r"]}, "ok")            # one line, after the fact

Each line is one write(2) on an O_APPEND file, so processes may append at once. Rotate the file
by moving it aside: esb creates a new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import getpass
import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from esb.errors import EsbError

STARTED = "started"
OK = "ok"
UNFINISHED = "unfinished"  # started, never said how it ended (the process died, or the last write failed)


class AuditError(EsbError):
    """The audit log could not be written: the action it was to record must not go ahead."""


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def who() -> str:
    """The operating-system user running this command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no USER/LOGNAME and no passwd entry (a bare container)
        return f"uid {os.getuid()}"


@dataclasses.dataclass
class Act:
    """One action being carried out; set `result` to what it did (counts, ids) before it ends, and
    `outcome` when it ended otherwise than `ok` without raising (a reload the project refused)."""

    id: str
    action: str
    route: str | None
    what: Mapping[str, Any]
    dry_run: bool
    result: Any = None
    outcome: str | None = None

    def line(self, outcome: str) -> dict:
        return {"id": self.id, "time": now(), "user": who(), "host": socket.gethostname(), "action": self.action,
                "route": self.route, "what": dict(self.what), "dry_run": self.dry_run, "outcome": outcome,
                "result": self.result}


@dataclasses.dataclass(frozen=True)
class Action:
    """An action as `esb audit` shows it: its two lines read back as one."""

    id: str
    started: str
    finished: str | None
    user: str
    host: str
    action: str
    route: str | None
    what: Mapping[str, Any]
    dry_run: bool
    outcome: str                 # ok, error: <why>, or unfinished
    result: Any

    @property
    def started_at(self) -> datetime.datetime | None:
        return parse_time(self.started)

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


class AuditLog:
    """Append to and read one audit log file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextlib.contextmanager
    def action(self, action: str, *, route: str | None = None, what: Mapping[str, Any] | None = None,
               dry_run: bool = False) -> Iterator[Act]:
        """Write `started` (or raise AuditError, before anything is done), run the block, write its outcome."""
        act = Act(uuid.uuid4().hex, action, route, what or {}, dry_run)
        self.append(act.line(STARTED))
        try:
            yield act
        except BaseException as exc:
            self._finish(act, f"error: {exc}" if str(exc) else f"error: {type(exc).__name__}", exc)
            raise
        self._finish(act, act.outcome or OK, None)

    def record(self, action: str, what: Mapping[str, Any], outcome: str, *, route: str | None = None,
               dry_run: bool = False, result: Any = None) -> None:
        """One line for an action already over (outcome `ok` or `error: <why>`); AuditError if not written."""
        self.append(Act(uuid.uuid4().hex, action, route, what, dry_run, result).line(outcome))

    def append(self, entry: Mapping[str, Any]) -> None:
        data = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError("the disk took only part of the line")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc.strerror or exc}") from None

    def actions(self, *, since: datetime.datetime | None = None,
                names: Iterable[str] = ()) -> tuple[list[Action], list[str]]:
        """The actions in the log, oldest first (optionally since a time, of some kinds), and one
        problem line per line of the file that is not an audit record."""
        lines, problems = self._lines()
        wanted = set(names)
        found = [a for a in merge(lines) if (not wanted or a.action in wanted)
                 and (since is None or (a.started_at is not None and a.started_at >= since))]
        return found, problems

    def _lines(self) -> tuple[list[dict], list[str]]:
        if not self.path.is_file():
            return [], []
        lines, problems = [], []
        with self.path.open(encoding="utf-8", errors="replace") as source:
            for number, text in enumerate(source, 1):
                if not text.strip():
                    continue
                try:
                    entry = json.loads(text)
                except ValueError:
                    entry = None
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    lines.append(entry)
                else:
                    problems.append(f"{self.path}:{number}: not an audit record, skipped")
        return lines, problems

    def _finish(self, act: Act, outcome: str, failure: BaseException | None) -> None:
        try:
            self.append(act.line(outcome))
        except AuditError as exc:
            if failure is None:
                raise AuditError(f"{exc}; the {act.action} itself was done ({act.result or 'no result'})") from None
            raise AuditError(f"{failure}; and {exc}") from failure


def merge(lines: Iterable[dict]) -> list[Action]:
    """Each action once: its `started` line completed by the line that says how it ended."""
    merged: dict[str, Action] = {}
    for entry in lines:
        earlier = merged.get(entry["id"])
        outcome = str(entry.get("outcome", ""))
        if earlier is None:
            merged[entry["id"]] = Action(
                id=entry["id"], started=str(entry.get("time", "")), finished=None if outcome == STARTED else
                entry.get("time"), user=str(entry.get("user", "")), host=str(entry.get("host", "")),
                action=str(entry.get("action", "")), route=entry.get("route"), what=entry.get("what") or {},
                dry_run=bool(entry.get("dry_run")), outcome=UNFINISHED if outcome == STARTED else outcome,
                result=entry.get("result"))
        else:
            merged[entry["id"]] = dataclasses.replace(earlier, finished=entry.get("time"), outcome=outcome,
                                                      result=entry.get("result"))
    return list(merged.values())


def parse_time(text: str) -> datetime.datetime | None:
    """An ISO time; one without an offset is UTC."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def log_path(root: Path) -> Path:
    """Where the project's audit log is: `audit.path`, relative to the project folder."""
    from esb.loading.config import load_settings
    return root / load_settings(root.resolve(), os.environ).audit_path


def for_project(root: Path) -> AuditLog:
    return AuditLog(log_path(root))


def record(root: Path, action: str, what: Mapping[str, Any], outcome: str, *, route: str | None = None) -> None:
    """Append one finished action to the audit log of the project at `root` (AuditError if it cannot)."""
    for_project(root).record(action, what, outcome, route=route)
