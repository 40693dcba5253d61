"""Named marks in the shared store: one short value per name, e.g. the last fire time a scheduled
route dealt with (`schedule:<route>`), so a restarted or newly leading machine knows what it missed.

Only a lease holder writes a mark (esb.store.leases), so a plain upsert is enough. `marks_for(store)`
gives the store's: a table in the SQLite file or the PostgreSQL database, a key in Redis, or (no
store) a dict of this process.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)"""
_SET = ("INSERT INTO {table} (name, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
_GET = "SELECT value FROM {table} WHERE name = ?"


class Marks(Protocol):
    """Failures are StoreUnavailable, as the store's."""

    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...


class MemoryMarks:
    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._values.get(name)

    def set(self, name: str, value: str) -> None:
        with self._lock:
            self._values[name] = value


class SqlMarks:
    """In the SQLite file (table `marks`) or the PostgreSQL database (`esb_marks`); made on first use."""

    def __init__(self, store: Any, table: str, placeholder: str):
        self._store, self._table, self._p = store, table, placeholder
        self._ready = False

    def get(self, name: str) -> str | None:
        row = self._run(_GET, (name,), fetch=True)
        return row[0] if row else None

    def set(self, name: str, value: str) -> None:
        self._run(_SET, (name, value, self._store._clock()))

    def _run(self, sql: str, params: tuple, fetch: bool = False):
        if not self._ready:
            self._statement(_TABLE, ())
            self._ready = True
        return self._statement(sql, params, fetch)

    def _statement(self, sql: str, params: tuple, fetch: bool = False):
        sql = sql.format(table=self._table).replace("?", self._p)
        if self._p == "?":
            with self._store._db() as db:
                cursor = db.execute(sql, params)
                return cursor.fetchone() if fetch else None
        with self._store._connection() as conn:
            if sql.startswith("CREATE"):  # two sessions creating one table at once can fail: see postgres.py
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('esb_store_schema'))")
                    conn.execute(sql)
                return None
            cursor = conn.execute(sql, params)
            return cursor.fetchone() if fetch else None


class RedisMarks:
    def __init__(self, store: Any):
        self._store = store

    def get(self, name: str) -> str | None:
        with self._store._translated():
            value = self._store._redis.get(f"esb:mark:{name}")
        return value.decode() if isinstance(value, bytes) else value

    def set(self, name: str, value: str) -> None:
        with self._store._translated():
            self._store._redis.set(f"esb:mark:{name}", value)


def marks_for(store: Any) -> Marks:
    from esb.store.postgres import PostgresStore
    from esb.store.redis import RedisStore
    from esb.store.sqlite import SqliteStore
    if isinstance(store, SqliteStore):
        return SqlMarks(store, "marks", "?")
    if isinstance(store, PostgresStore):
        return SqlMarks(store, "esb_marks", "%s")
    if isinstance(store, RedisStore):
        return RedisMarks(store)
    return MemoryMarks()
