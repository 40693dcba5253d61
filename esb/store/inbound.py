"""The SFTP inbound ledger: which remote files a poller published, and which it then archived.

A file is known by (adapter, inbound, path, size, mtime, sha256). The poller asks `seen` (by path,
size and mtime, before downloading: for inbounds that leave files in place), `published` (with the
hash, after downloading), writes `record` once the broker confirmed the file and `finished` once
it was archived or deleted. Two ledgers: `SqliteInboundLedger`, a file per machine (the SQLite
and Redis stores), and the PostgreSQL store's table, shared by every machine
(`PostgresStore.inbound_ledger()`). `inbound_ledger(store, path)` picks the one a store offers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from esb.store.records import StoreUnavailable

BUSY_TIMEOUT = 10.0  # seconds a ledger write waits for another process's

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sftp_inbound (
    adapter      TEXT NOT NULL,
    inbound      TEXT NOT NULL,
    path         TEXT NOT NULL,       -- the remote path the file was found at
    size         INTEGER NOT NULL,
    mtime        INTEGER NOT NULL,    -- epoch seconds, as the server reports it
    sha256       TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    published_at REAL NOT NULL,       -- when the broker confirmed it
    finished_at  REAL,                -- when it was archived or deleted
    PRIMARY KEY (adapter, inbound, path, size, mtime, sha256)
) WITHOUT ROWID
"""
_KEY = "adapter = ? AND inbound = ? AND path = ? AND size = ? AND mtime = ?"


class InboundFile(Protocol):
    """What the ledger needs of a remote file (the poller's RemoteFile)."""

    path: str
    size: int
    mtime: int


class InboundLedger(Protocol):
    """Failures are StoreUnavailable (a TransientError): the round ends, the files wait for the next."""

    def seen(self, adapter: str, inbound: str, file: InboundFile) -> bool: ...
    def published(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> bool: ...
    def record(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> None: ...
    def finished(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> None: ...


def inbound_ledger(store, path: str | Path) -> InboundLedger:
    """The ledger `store` keeps for every machine (PostgreSQL), else a SQLite file at `path`."""
    offered = getattr(store, "inbound_ledger", None)
    return offered() if offered is not None else SqliteInboundLedger(path)


class SqliteInboundLedger:
    """The ledger of one machine: a SQLite file in WAL mode; each call opens and closes a connection
    (a poll round asks a few times a minute), so a ledger made before a fork works after it."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self._clock = clock

    def seen(self, adapter: str, inbound: str, file: InboundFile) -> bool:
        query = f"SELECT 1 FROM sftp_inbound WHERE {_KEY}"
        with self._db() as db:
            return db.execute(query, (adapter, inbound, file.path, file.size, file.mtime)).fetchone() is not None

    def published(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> bool:
        query = f"SELECT 1 FROM sftp_inbound WHERE {_KEY} AND sha256 = ?"
        with self._db() as db:
            params = (adapter, inbound, file.path, file.size, file.mtime, sha256)
            return db.execute(query, params).fetchone() is not None

    def record(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR IGNORE INTO sftp_inbound (adapter, inbound, path, size, mtime, sha256, "
                       "message_id, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (adapter, inbound, file.path, file.size, file.mtime, sha256, sha256, self._clock()))

    def finished(self, adapter: str, inbound: str, file: InboundFile, sha256: str) -> None:
        with self._db() as db:
            db.execute(f"UPDATE sftp_inbound SET finished_at = ? WHERE {_KEY} AND sha256 = ?",
                       (self._clock(), adapter, inbound, file.path, file.size, file.mtime, sha256))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)  # autocommit
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(_SCHEMA)
                yield db
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"the SFTP inbound ledger {self.path} failed: {exc}") from exc
