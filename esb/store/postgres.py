"""The shared, durable dedup store for workers on several machines: tables in a PostgreSQL database."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from esb.store import leases
from esb.store.inbound import InboundFile
from esb.store.marks import SqlMarks
from esb.store.records import (
    CLAIMED,
    Claim,
    LeaseLost,
    StoreUnavailable,
    claim_existing,
    redacted,
)
from esb.store.sqlstore import SqlStore, Statements
from esb.transform import jsoncodec

# The tables go into the first schema of the connection's search_path: a URL ending in
# ?options=-csearch_path%3Desb puts them in schema `esb` (which must exist).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS esb_idempotency (
    route         text NOT NULL,
    key           text NOT NULL,
    state         text NOT NULL,                          -- in_progress | done | dead
    owner         text,                                   -- lease holder; NULL once released
    lease_until   double precision NOT NULL DEFAULT 0,    -- epoch seconds
    lease_seconds double precision NOT NULL DEFAULT 0,    -- each recorded step renews the lease by this
    progress      text NOT NULL DEFAULT '',               -- JSON lines, one StepRecord each
    outcome       text,
    updated_at    double precision NOT NULL,
    generations   text NOT NULL DEFAULT '',               -- JSON {step label: generation}, '' for none
    PRIMARY KEY (route, key)
);
CREATE TABLE IF NOT EXISTS esb_redeliveries (
    route         text NOT NULL,
    message_id    text NOT NULL,
    count         integer NOT NULL,
    updated_at    double precision NOT NULL,              -- epoch seconds of the last count
    PRIMARY KEY (route, message_id)
);
CREATE INDEX IF NOT EXISTS esb_redeliveries_updated_at ON esb_redeliveries (updated_at);
CREATE TABLE IF NOT EXISTS esb_sftp_inbound (
    adapter       text NOT NULL,
    inbound       text NOT NULL,
    path          text NOT NULL,                          -- the remote path the file was found at
    size          bigint NOT NULL,
    mtime         bigint NOT NULL,                        -- epoch seconds, as the server reports it
    sha256        text NOT NULL,
    message_id    text NOT NULL,
    published_at  double precision NOT NULL,              -- when the broker confirmed it
    finished_at   double precision,                       -- when it was archived or deleted
    PRIMARY KEY (adapter, inbound, path, size, mtime, sha256)
);
CREATE TABLE IF NOT EXISTS esb_marks (
    name          text PRIMARY KEY,                       -- e.g. schedule:<route>
    value         text NOT NULL,                          -- e.g. the last fire time dealt with
    updated_at    double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS esb_leases (
    name          text PRIMARY KEY,                       -- e.g. sftp:<adapter>:<inbound>
    owner         text NOT NULL,                          -- the holder, or the last one once released
    token         bigint NOT NULL,                        -- the fencing token: +1 each time it changes hands
    lease_until   double precision NOT NULL,              -- epoch seconds; 0 once released
    updated_at    double precision NOT NULL
);
"""
# CREATE TABLE IF NOT EXISTS is not safe against itself: two sessions creating one table at once
# can fail on pg_type's unique index. Workers starting together take turns on this lock.
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('esb_store_schema'))"

_CLAIM_NEW = """
INSERT INTO esb_idempotency (route, key, state, owner, lease_until, lease_seconds, progress, outcome, updated_at)
VALUES (%s, %s, 'in_progress', %s, %s, %s, '', NULL, %s)
ON CONFLICT (route, key) DO NOTHING
"""

_CLAIM_FRESH = """
INSERT INTO esb_idempotency (route, key, state, owner, lease_until, lease_seconds, progress, outcome, updated_at)
VALUES (%s, %s, 'in_progress', %s, %s, %s, '', NULL, %s)
ON CONFLICT (route, key) DO UPDATE SET state = excluded.state, owner = excluded.owner,
    lease_until = excluded.lease_until, lease_seconds = excluded.lease_seconds, progress = '',
    outcome = NULL, updated_at = excluded.updated_at
"""

_GET_FOR_UPDATE = """
SELECT state, owner, lease_until, progress, outcome, updated_at, generations FROM esb_idempotency
WHERE route = %s AND key = %s FOR UPDATE
"""

_RESUME = """
UPDATE esb_idempotency SET owner = %s, lease_until = %s, lease_seconds = %s, updated_at = %s
WHERE route = %s AND key = %s
"""

_RECORD_STEP = """
UPDATE esb_idempotency SET progress = progress || %s, lease_until = %s + lease_seconds, updated_at = %s
WHERE route = %s AND key = %s AND state = 'in_progress' AND owner = %s
"""

_RELEASE = """
UPDATE esb_idempotency SET owner = NULL, lease_until = 0, updated_at = %s
WHERE route = %s AND key = %s AND state = 'in_progress' AND owner = %s
"""

# An absent record may be finished directly: a route without side effects skips claim.
_FINISH = """
INSERT INTO esb_idempotency (route, key, state, owner, lease_until, lease_seconds, progress, outcome, updated_at)
VALUES (%s, %s, 'done', %s, 0, 0, '', %s, %s)
ON CONFLICT (route, key) DO UPDATE SET state = 'done', lease_until = 0, progress = '',
    outcome = excluded.outcome, updated_at = excluded.updated_at
WHERE esb_idempotency.state = 'in_progress' AND esb_idempotency.owner = excluded.owner
RETURNING key
"""

# generations: NULL keeps what the record holds (what its claim returned).
_MARK_DEAD = """
UPDATE esb_idempotency SET state = 'dead', lease_until = 0, progress = '',
    generations = COALESCE(%s, generations), updated_at = %s
WHERE route = %s AND key = %s AND state = 'in_progress' AND owner = %s
"""

_GET = """
SELECT state, owner, lease_until, progress, outcome, updated_at, generations FROM esb_idempotency
WHERE route = %s AND key = %s
"""

_COUNT_REDELIVERY = """
INSERT INTO esb_redeliveries (route, message_id, count, updated_at) VALUES (%s, %s, 1, %s)
ON CONFLICT (route, message_id) DO UPDATE SET count = esb_redeliveries.count + 1, updated_at = excluded.updated_at
RETURNING count
"""

_PURGE_REDELIVERIES = "DELETE FROM esb_redeliveries WHERE updated_at < %s"
_FORGET_REDELIVERIES = "DELETE FROM esb_redeliveries WHERE route = %s AND message_id = %s"
# A connection idle in the pool longer than this is checked (an empty query) before it is lent.
# Checking every one cost ~20% of claim+finish a second (16 threads: 1.8k against 2.2k).
_CHECK_IDLE_AFTER = 1.0
# After a failed open, the other threads get that failure for this long instead of each waiting
# out a connect timeout of its own, one after another, behind the lock.
_REOPEN_AFTER = 1.0

_FILE = "adapter = %s AND inbound = %s AND path = %s AND size = %s AND mtime = %s"
_SEEN = f"SELECT 1 FROM esb_sftp_inbound WHERE {_FILE}"
_PUBLISHED = f"SELECT 1 FROM esb_sftp_inbound WHERE {_FILE} AND sha256 = %s"
_RECORD_FILE = """
INSERT INTO esb_sftp_inbound (adapter, inbound, path, size, mtime, sha256, message_id, published_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
_FINISHED_FILE = f"UPDATE esb_sftp_inbound SET finished_at = %s WHERE {_FILE} AND sha256 = %s"


class PostgresStore(SqlStore):
    """The durable store for several machines: one row per record, each change one statement or
    one short transaction, on a pool of connections (psycopg 3, psycopg_pool).

    The semantics are the SQLite store's, statement for statement: a new key is claimed by one
    INSERT ... ON CONFLICT DO NOTHING; a key that is done, dead or in progress is read FOR UPDATE
    and taken over, or not, in the same transaction; every other write is one statement whose
    WHERE clause checks the lease holder. Times come from the store's clock, so the machines'
    clocks must agree (NTP) to well within a lease; an owner whose process is gone on this host
    loses its lease at once (owners.takes_over), one on another host when the lease runs out.

    A connection that sat in the pool for over a second is checked before it is lent (an empty
    query): one that the server or a proxy dropped meanwhile (a restart, an idle timeout) is
    replaced instead of failing a message. A connection lost during a statement, or dropped
    within that second, is a StoreUnavailable (a TransientError): the message is retried, and
    nothing is answered from a statement whose outcome is unknown.

    The pool is opened on first use in each process: a store made before a fork is usable in the
    child. Redelivery counts are purged as in SqliteStore (a week untouched, checked hourly).
    """

    SQL = Statements(_RECORD_STEP, _RELEASE, _FINISH, _MARK_DEAD, _GET, _COUNT_REDELIVERY, _PURGE_REDELIVERIES,
                     _FORGET_REDELIVERIES)

    def __init__(self, url: str, *, max_connections: int = 16, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time):
        self._url = url
        self._max_connections = max_connections
        self._timeout = timeout
        self._clock = clock
        self._next_purge = float("-inf")
        self._lock = threading.Lock()
        self._pool: Any = None
        self._pid: int | None = None
        self._failed: tuple[float, str] = (float("-inf"), "")  # monotonic time and reason of the last failed open
        self._returned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> monotonic time

    def claim(self, route: str, key: str, owner: str, lease_seconds: float) -> Claim:
        now = self._clock()
        fresh = (route, key, owner, now + lease_seconds, lease_seconds, now)
        with self._connection() as conn:
            if conn.execute(_CLAIM_NEW, fresh).rowcount:
                return Claim(CLAIMED)
            with conn.transaction():  # the key is done, dead or in progress: read it, decide, maybe take over
                action, claim = claim_existing(conn.execute(_GET_FOR_UPDATE, (route, key)).fetchone(), owner, now)
                if action == "fresh":
                    conn.execute(_CLAIM_FRESH, fresh)
                elif action == "resume":
                    conn.execute(_RESUME, (owner, now + lease_seconds, lease_seconds, now, route, key))
        return claim

    def finish_many(self, route: str, finished: list[tuple[str, str, dict]]) -> list[LeaseLost | None]:
        """`finish` for each (key, owner, outcome), in one round trip (a pipeline) and one commit.
        Returns, for each, None or the LeaseLost that `finish` would have raised."""
        now = self._clock()
        rows = [(route, key, owner, jsoncodec.dumps(outcome), now) for key, owner, outcome in finished]
        done: set[str] = set()
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(_FINISH, rows, returning=True)
            while True:
                done.update(row[0] for row in cursor.fetchall())
                if not cursor.nextset():
                    break
        return [None if key in done else self._finish_error(route, key, owner) for key, owner, _ in finished]

    def inbound_ledger(self) -> PostgresInboundLedger:
        """The SFTP inbound ledger in this database, shared by the pollers of every machine."""
        return PostgresInboundLedger(self)

    def marks(self) -> SqlMarks:
        """Named marks in this database, shared by every machine (esb.store.marks)."""
        return SqlMarks(self, "esb_marks", "%s")

    def leases(self) -> leases.SqlLeases:
        """Named leases in this database, shared by every machine (one SFTP poller per inbound)."""
        return leases.SqlLeases(self, "esb_leases", "%s")

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():  # a pool inherited over fork is the parent's
            pool.close()

    def _write(self, sql: str, params: tuple) -> bool:
        with self._connection() as conn:
            return conn.execute(sql, params).rowcount > 0

    def _one(self, sql: str, params: tuple) -> tuple | None:
        with self._connection() as conn:
            return conn.execute(sql, params).fetchone()

    _returning = _one  # autocommit: a write with RETURNING commits as its statement ends

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection in autocommit mode; the driver's errors become StoreUnavailable."""
        import psycopg

        try:
            with self._opened().connection() as conn:
                try:
                    yield conn
                finally:
                    self._returned[conn] = time.monotonic()  # see _check_if_idle
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # down, dropped, pool timeout
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise StoreUnavailable(f"the idempotency store at {redacted(self._url)} failed: {reason}") from exc

    def _opened(self) -> Any:
        if self._pid == os.getpid() and self._pool is not None:
            return self._pool
        import psycopg

        with self._lock:
            if self._pid != os.getpid() or self._pool is None:
                if time.monotonic() - self._failed[0] < _REOPEN_AFTER:
                    raise psycopg.OperationalError(self._failed[1])
                try:
                    self._pool, self._pid = self._open(), os.getpid()
                except psycopg.OperationalError as exc:
                    self._failed = (time.monotonic(), str(exc))
                    raise
        return self._pool

    def _open(self) -> Any:
        """Create the tables (on a connection of its own: a server that is down fails here with
        the reason, not with a pool's timeout), then open the pool."""
        import psycopg
        from psycopg_pool import ConnectionPool

        with psycopg.connect(self._url, autocommit=True, connect_timeout=max(2, round(self._timeout))) as conn:
            with conn.transaction():
                conn.execute(_SCHEMA_LOCK)
                conn.execute(_SCHEMA)
        return ConnectionPool(self._url, min_size=1, max_size=self._max_connections, timeout=self._timeout,
                              kwargs={"autocommit": True}, check=self._check_if_idle, name="esb-store", open=True)

    def _check_if_idle(self, conn: Any) -> None:
        if time.monotonic() - self._returned.get(conn, float("-inf")) > _CHECK_IDLE_AFTER:
            from psycopg_pool import ConnectionPool
            ConnectionPool.check_connection(conn)


class PostgresInboundLedger:
    """Which SFTP files were published (and archived), in the store's database: `esb_sftp_inbound`."""

    def __init__(self, store: PostgresStore):
        self._store = store

    def seen(self, adapter: str, inbound: str, file: InboundFile) -> bool:
        return self._found(_SEEN, (adapter, inbound, file.path, file.size, file.mtime))

    def published(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> bool:
        return self._found(_PUBLISHED, (adapter, inbound, file.path, file.size, file.mtime, sha256))

    def record(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> None:
        now = self._store._clock()
        self._store._write(_RECORD_FILE, (adapter, inbound, file.path, file.size, file.mtime, sha256, sha256, now))

    def finished(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> None:
        now = self._store._clock()
        self._store._write(_FINISHED_FILE, (now, adapter, inbound, file.path, file.size, file.mtime, sha256))

    def _found(self, sql: str, params: tuple) -> bool:
        return self._store._one(sql, params) is not None


