"""Named marks in the shared store: one short value per name, e.g. the last fire time a scheduled
route dealt with (`schedule:<route>`), so a restarted or newly leading machine knows what it missed.

Only a lease holder writes a mark (esb.store.leases), so a plain upsert is enough. `marks_for(store)`
gives the store's (`store.marks()`): a table in the SQLite file or the PostgreSQL database, a key in
Redis, or (no store) a dict of this process.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

SET_SQL = ("INSERT INTO {table} (name, value, updated_at) VALUES (?, ?, ?) "
           "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
GET_SQL = "SELECT value FROM {table} WHERE name = ?"


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
    """In a table of the SQLite file (`marks`) or the PostgreSQL database (`esb_marks`), made with
    the store's other tables."""

    def __init__(self, store: Any, table: str, placeholder: str = "?"):
        self._store = store
        self._set, self._get = (sql.format(table=table).replace("?", placeholder) for sql in (SET_SQL, GET_SQL))

    def get(self, name: str) -> str | None:
        row = self._store._one(self._get, (name,))
        return row[0] if row else None

    def set(self, name: str, value: str) -> None:
        self._store._write(self._set, (name, value, self._store._clock()))


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
    """The store's marks (each store offers `marks()`, as it offers `leases()`); without a store, this process's."""
    return MemoryMarks() if store is None else store.marks()
