"""The embedded dedup store: one SQLite file in WAL mode, shared by the threads and processes of a host."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from esb.store import leases
from esb.store.groupcommit import GroupCommitter, Then
from esb.store.marks import SqlMarks
from esb.store.records import (
    CLAIMED,
    Claim,
    LeaseLost,
    StepRecord,
    StoreUnavailable,
    claim_existing,
)
from esb.store.sqlstore import SqlStore, Statements
from esb.transform import jsoncodec

# A rowid table with a unique index, not a WITHOUT ROWID table keyed by (route, key): a message's
# claim, step record and `done` commit in three different transactions, and keyed by a random key
# each of them rewrote a random leaf page (and a record's progress spilled to an overflow page).
# Here only the claim touches a random page (the index's); the row lives in the table's tail pages,
# which the other messages of the same commit share. Measured with the committer's mix (claims,
# records and `done`s of different messages in each transaction, 50,000 rows in the file): 45-54
# against 28-36 µs of CPU a message.
_IDEMPOTENCY = """
CREATE TABLE IF NOT EXISTS idempotency (
    route         TEXT NOT NULL,
    key           TEXT NOT NULL,
    state         TEXT NOT NULL,               -- in_progress | done | dead
    owner         TEXT,                        -- lease holder; NULL once released
    lease_until   REAL NOT NULL DEFAULT 0,     -- epoch seconds
    lease_seconds REAL NOT NULL DEFAULT 0,     -- each recorded step renews the lease by this
    progress      TEXT NOT NULL DEFAULT '',    -- JSON lines, one StepRecord each
    outcome       TEXT,
    updated_at    REAL NOT NULL,
    generations   TEXT NOT NULL DEFAULT '',    -- JSON {step label: generation}, '' for none
    UNIQUE (route, key)
)"""

_SCHEMA = _IDEMPOTENCY + """;
CREATE TABLE IF NOT EXISTS redeliveries (
    route         TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    count         INTEGER NOT NULL,
    updated_at    REAL NOT NULL,               -- epoch seconds of the last count
    PRIMARY KEY (route, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marks (
    name          TEXT PRIMARY KEY,            -- e.g. schedule:<route>
    value         TEXT NOT NULL,               -- e.g. the last fire time dealt with
    updated_at    REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    name          TEXT PRIMARY KEY,            -- e.g. sftp:<adapter>:<inbound>
    owner         TEXT NOT NULL,               -- the holder, or the last one once released
    token         INTEGER NOT NULL,            -- the fencing token: +1 each time it changes hands
    lease_until   REAL NOT NULL,               -- epoch seconds; 0 once released
    updated_at    REAL NOT NULL
) WITHOUT ROWID;
"""

# A store file made before generations existed gets the column (an instant change in SQLite).
_ADD_GENERATIONS = "ALTER TABLE idempotency ADD COLUMN generations TEXT NOT NULL DEFAULT ''"

_LAYOUT = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'idempotency'"
_COLUMNS = "route, key, state, owner, lease_until, lease_seconds, progress, outcome, updated_at, generations"

_CLAIM_FRESH = """
INSERT INTO idempotency (route, key, state, owner, lease_until, lease_seconds, progress, outcome, updated_at)
VALUES (?, ?, 'in_progress', ?, ?, ?, '', NULL, ?)
ON CONFLICT (route, key) DO UPDATE SET state = excluded.state, owner = excluded.owner,
    lease_until = excluded.lease_until, lease_seconds = excluded.lease_seconds, progress = '',
    outcome = NULL, updated_at = excluded.updated_at
"""

# The common case in one statement: a new key is claimed at once. A dead key (a replay, rare)
# is read first for the generations it keeps: an upsert RETURNING them on every claim measured
# ~10% fewer claim+finish a second (one thread: 16.8k against 18.9k, medians of 7 runs).
_CLAIM_NEW = """
INSERT INTO idempotency (route, key, state, owner, lease_until, lease_seconds, progress, outcome, updated_at)
VALUES (?, ?, 'in_progress', ?, ?, ?, '', NULL, ?)
ON CONFLICT (route, key) DO NOTHING
"""

_RESUME = """
UPDATE idempotency SET owner = ?, lease_until = ?, lease_seconds = ?, updated_at = ?
WHERE route = ? AND key = ?
"""

_RECORD_STEP = """
UPDATE idempotency SET progress = progress || ?, lease_until = ? + lease_seconds, updated_at = ?
WHERE route = ? AND key = ? AND state = 'in_progress' AND owner = ?
"""

_RELEASE = """
UPDATE idempotency SET owner = NULL, lease_until = 0, updated_at = ?
WHERE route = ? AND key = ? AND state = 'in_progress' AND owner = ?
"""

_ROWS_PER_STATEMENT = 100  # 5 parameters a row; old SQLite builds allow 999 per statement


def _finish_rows(count: int) -> str:
    """Finish `count` records in one statement (one commit, one wait for the GIL, for all). An
    absent record may be finished directly: a route without side effects skips claim."""
    rows = ", ".join(["(?, ?, 'done', ?, 0, 0, '', ?, ?)"] * count)
    return f"""
INSERT INTO idempotency (route, key, state, owner, lease_until, lease_seconds, progress, outcome, updated_at)
VALUES {rows}
ON CONFLICT (route, key) DO UPDATE SET state = 'done', lease_until = 0, progress = '',
    outcome = excluded.outcome, updated_at = excluded.updated_at
WHERE state = 'in_progress' AND owner = excluded.owner
"""


_FINISH = _finish_rows(1)

# generations: NULL keeps what the record holds (what its claim returned).
_MARK_DEAD = """
UPDATE idempotency SET state = 'dead', lease_until = 0, progress = '', generations = COALESCE(?, generations),
    updated_at = ?
WHERE route = ? AND key = ? AND state = 'in_progress' AND owner = ?
"""

_GET = """
SELECT state, owner, lease_until, progress, outcome, updated_at, generations FROM idempotency
WHERE route = ? AND key = ?
"""

_COUNT_REDELIVERY = """
INSERT INTO redeliveries (route, message_id, count, updated_at) VALUES (?, ?, 1, ?)
ON CONFLICT (route, message_id) DO UPDATE SET count = count + 1, updated_at = excluded.updated_at
RETURNING count
"""

_PURGE_REDELIVERIES = "DELETE FROM redeliveries WHERE updated_at < ?"
_FORGET_REDELIVERIES = "DELETE FROM redeliveries WHERE route = ? AND message_id = ?"


class SqliteStore(SqlStore):
    """The embedded store: one SQLite file in WAL mode, shared by the threads and processes of a host.

    Writes go through a group commit (esb.store.groupcommit): one committer thread per store and
    process runs every write the route threads have pending in one BEGIN IMMEDIATE ... COMMIT, and
    each caller returns once its write is committed. Measured on 2 cores, 64 threads each doing
    claim, a 20 ms call, record_step and a `done` through the Finisher (the bench's I/O route
    without the broker and HTTP): the store cost 340-400 us of CPU a message with every write its
    own commit, 115-145 us grouped, ~8 writes a transaction. A route thread's own transaction was
    worse, not better: it holds the write lock while its thread waits for the GIL between
    statements (64 threads POSTing: 500 msg/s against 660-690), and so did a lock of our own around
    the writes; the committer is the only writer of its process, so nobody of ours waits for it.
    Each write is one statement whose WHERE clause checks the lease holder; claim is one insert for
    a new key (nearly every message), and reads the record and decides (in the same transaction)
    only for a key that is done, dead or in progress. Reads use one connection per thread and never
    wait for the writer (WAL).

    Redelivery counts live in a table of their own; a store deletes the counts not touched for a
    week (REDELIVERY_TTL) on the first count_redelivery after opening and then once an hour of its
    clock, so the table holds about a week of redelivered messages and no timer is needed.
    """

    SQL = Statements(_RECORD_STEP, _RELEASE, _FINISH, _MARK_DEAD, _GET, _COUNT_REDELIVERY, _PURGE_REDELIVERIES,
                     _FORGET_REDELIVERIES)

    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = 10.0,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._next_purge = float("-inf")
        self._local = threading.local()
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._opened_lock = threading.Lock()
        self._committer = GroupCommitter(self._open, self._unavailable, name=f"esb-store-{self.path.name}")
        with self._db() as db:
            db.executescript(_SCHEMA)
            self._add_generations(db)
            self._move_to_rowid_table(db)

    def claim(self, route: str, key: str, owner: str, lease_seconds: float) -> Claim:
        return self._committer.run(self._claim(route, key, owner, lease_seconds))

    def claim_later(self, route: str, key: str, owner: str, lease_seconds: float, then: Then) -> None:
        """`claim` without waiting: `then(claim, None)` or `then(None, error)` on the store's commit
        thread once it committed (it must not block). Raises StoreUnavailable if the store is closed."""
        self._committer.submit(self._claim(route, key, owner, lease_seconds), then)

    def record_step_later(self, route: str, key: str, owner: str, record: StepRecord, then: Then) -> None:
        """`record_step` without waiting: `then(None, None)` once committed, `then(None, error)` if it
        failed (LeaseLost: `owner` no longer holds the record). It commits before any write of the
        record queued after it (a `done`, a release), as every write of this process does."""
        self._write_later(_RECORD_STEP, self._step_params(route, key, owner, record), then, lambda: LeaseLost(
            f"{owner} cannot record a step for {route}/{key}: the record is no longer its own"))

    def finish_later(self, route: str, key: str, owner: str, outcome: dict, then: Then) -> None:
        """`finish` without waiting: `then(None, None)` once `done` committed, `then(None, error)` if
        it failed (LeaseLost: `owner` no longer holds the record). It commits after every write of
        this process queued before it (the message's step records)."""
        # no row changed: _finish_error says why, or None when this owner had finished it already
        self._write_later(_FINISH, self._finish_params(route, key, owner, outcome), then,
                          lambda: self._finish_error(route, key, owner))

    def _write_later(self, sql: str, params: tuple, then: Then, unchanged: Callable[[], Exception | None]) -> None:
        """One statement in the next group commit; `then(None, unchanged())` if it changed no row."""
        def written(changed: bool | None, error: Exception | None) -> None:
            then(None, unchanged() if error is None and not changed else error)
        self._committer.submit(lambda db: db.execute(sql, params).rowcount > 0, written)

    def _claim(self, route: str, key: str, owner: str, lease_seconds: float) -> Callable[[sqlite3.Connection], Claim]:
        now = self._clock()

        def claim(db: sqlite3.Connection) -> Claim:
            if db.execute(_CLAIM_NEW, (route, key, owner, now + lease_seconds, lease_seconds, now)).rowcount:
                return Claim(CLAIMED)  # a new key: nearly every message
            # the key is done, dead or in progress: read it, decide, maybe take over (in the same transaction)
            action, claim = claim_existing(db.execute(_GET, (route, key)).fetchone(), owner, now)
            if action == "fresh":
                db.execute(_CLAIM_FRESH, (route, key, owner, now + lease_seconds, lease_seconds, now))
            elif action == "resume":
                db.execute(_RESUME, (owner, now + lease_seconds, lease_seconds, now, route, key))
            return claim
        return claim

    def finish_many(self, route: str, finished: list[tuple[str, str, dict]]) -> list[LeaseLost | None]:
        """`finish` for (key, owner, outcome) each, in one statement per 100 and one transaction.
        Returns, for each, None or the LeaseLost that `finish` would have raised."""
        now = self._clock()
        rows = [(route, key, owner, jsoncodec.dumps(outcome), now) for key, owner, outcome in finished]

        def finish(db: sqlite3.Connection) -> int:
            changed = 0
            for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                chunk = rows[start:start + _ROWS_PER_STATEMENT]
                changed += db.execute(_finish_rows(len(chunk)), [v for row in chunk for v in row]).rowcount
            return changed
        if self._committer.run(finish) == len(rows):
            return [None] * len(rows)
        return [self._finish_error(route, key, owner) for key, owner, _ in finished]  # rare: look at each

    def marks(self) -> SqlMarks:
        """Named marks in this file (esb.store.marks)."""
        return SqlMarks(self, "marks")

    def leases(self) -> leases.SqlLeases:
        """Named leases in this file: one holder among the processes of this host."""
        return leases.SqlLeases(self, "leases")

    def close(self) -> None:
        """Commit the writes queued, stop the committer, close every connection of this process."""
        self._committer.close()
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for pid, conn in opened:
            if pid == os.getpid():  # a connection inherited over fork belongs to the parent
                conn.close()

    def _write(self, sql: str, params: tuple) -> bool:
        return self._committer.run(lambda db: db.execute(sql, params).rowcount > 0)

    def _one(self, sql: str, params: tuple) -> tuple | None:
        """The first row of a read, on this thread's connection (WAL: it never waits for the writer)."""
        with self._db() as db:
            rows = db.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def _returning(self, sql: str, params: tuple) -> tuple | None:
        """The first row of a write with RETURNING, in the next group commit."""
        rows = self._committer.run(lambda db: db.execute(sql, params).fetchall())
        return rows[0] if rows else None

    def _add_generations(self, db: sqlite3.Connection) -> None:
        if any(column[1] == "generations" for column in db.execute("PRAGMA table_info(idempotency)")):
            return
        try:
            db.execute(_ADD_GENERATIONS)
        except sqlite3.OperationalError as exc:  # another process added it first
            if "duplicate column" not in str(exc):
                raise

    def _move_to_rowid_table(self, db: sqlite3.Connection) -> None:
        """A store file made before the rowid layout (see _IDEMPOTENCY) has its records moved to it,
        in one transaction: a process opening the file meanwhile waits for it (busy_timeout)."""
        if not _without_rowid(db):
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if _without_rowid(db):  # another process may have moved them while this one waited
                started = time.monotonic()
                db.execute("ALTER TABLE idempotency RENAME TO idempotency_without_rowid")
                db.execute(_IDEMPOTENCY)
                moved = db.execute(f"INSERT INTO idempotency ({_COLUMNS}) "
                                   f"SELECT {_COLUMNS} FROM idempotency_without_rowid").rowcount
                db.execute("DROP TABLE idempotency_without_rowid")
                structlog.get_logger("esb.store").info("store_layout_upgraded", path=str(self.path), records=moved,
                                                       seconds=round(time.monotonic() - started, 3))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._connection()
        except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk full, I/O error
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"the idempotency store {self.path} failed: {exc}")

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # first use in this thread, or after a fork
            local.conn, local.pid = self._open(), os.getpid()
        return local.conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """WAL mode, which the file keeps once set. Switching needs an exclusive lock that SQLite
        does not wait for (no busy handler), so workers opening a new store at once retry."""
        deadline = time.monotonic() + self._busy_timeout
        while conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit, so that the committer's BEGIN IMMEDIATE is ours.
        # check_same_thread=False only so that close() can close them all.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                               check_same_thread=False)
        self._use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: survives a process crash
        with self._opened_lock:
            self._opened.append((os.getpid(), conn))
        return conn


def _without_rowid(db: sqlite3.Connection) -> bool:
    return "WITHOUT ROWID" in db.execute(_LAYOUT).fetchone()[0].upper()
