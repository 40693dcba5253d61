"""Group commit for the SQLite store: one thread per store and process writes what every route
thread has pending in one transaction, and each caller returns once its write is committed.

Each write committed on its own costs its thread a commit (the WAL append and its locks) and a
wait among 64 route threads to take the GIL back around it; on the bench's I/O route that was
~35-39% of the route's CPU per message. Here the route threads queue their writes, the committer
takes every write pending (~6 at 64 threads), runs them in one BEGIN IMMEDIATE ... COMMIT on its
own connection, then wakes their callers. The guarantees are those of a write on its own: a
caller returns only once its transaction committed (a claim is durable before the effect, a
`done` before the ack), and a commit that fails fails every caller in it with StoreUnavailable.
Reads stay direct: in WAL mode they never wait for the writer.

A write that raises an error of its own (not SQLite's: a bug, a decision in Python) fails only its
caller; the others in the transaction stand. Such a write must raise before it changes anything.

`submit(op, then)` queues a write without waiting for it: `then(result, error)` runs on the
committer's thread once its transaction ended. A route thread that would only block on the commit
(a claim made on the broker's thread, a step record with no call after it) saves a sleep and a
wake-up among 64 threads. Writes commit in the order they were queued, from whichever thread: a
later write of the same record (a `done`, a release) never commits before an earlier one.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import structlog

MAX_BATCH = 512  # writes in one transaction at most: bounds how long the write lock is held


Then = Callable[[Any, "Exception | None"], None]


class _Pending:
    """One queued write: the callable, then its result or error, and either the lock its caller
    waits on or the callback that takes them."""

    __slots__ = ("op", "result", "error", "done", "then")

    def __init__(self, op: Callable[[sqlite3.Connection], Any], then: Then | None = None):
        self.op, self.result, self.error, self.then = op, None, None, then
        self.done = None
        if then is None:
            self.done = threading.Lock()
            self.done.acquire()  # released by the committer once the transaction ended


class GroupCommitter:
    """`run(op)` from any thread: op(connection) runs in the committer's next transaction, and its
    result is returned (or its error raised) once that transaction committed.

    `connect()` opens the committer's connection (autocommit, so that BEGIN is ours); `failed(exc)`
    turns a SQLite error into the store's error. One committer thread per process: a forked child
    starts its own at its first write. `close()` commits what is queued, then stops the thread.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], failed: Callable[[Exception], Exception],
                 name: str = "esb-store-commit"):
        self._connect, self._failed, self._name = connect, failed, name
        self._lock = threading.Lock()  # orders run()'s enqueue against close()
        self._closed = False
        self._pid: int | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        pending = self._queued(_Pending(op))
        pending.done.acquire()
        if isinstance(pending.error, sqlite3.Error):  # each caller raises an error of its own
            raise self._failed(pending.error) from pending.error
        if pending.error is not None:
            raise pending.error
        return pending.result

    def submit(self, op: Callable[[sqlite3.Connection], Any], then: Then) -> None:
        """Queue `op` and return at once; `then(result, None)` or `then(None, error)` runs on the
        committer's thread after its transaction, so it must be quick and must not block. Raises
        (as run does) if the committer is closed."""
        self._queued(_Pending(op, then))

    def _queued(self, pending: _Pending) -> _Pending:
        with self._lock:
            if self._closed:
                raise self._failed(sqlite3.OperationalError("the store is closed"))
            if self._pid != os.getpid():  # first write in this process (or a forked child)
                self._start()
            self._queue.put(pending)
        return pending

    def close(self, timeout: float = 30.0) -> None:
        """Commit every write queued so far, then stop the committer; later writes fail."""
        with self._lock:
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    def _start(self) -> None:
        self._pid, self._queue = os.getpid(), queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, args=(self._queue,), name=self._name, daemon=True)
        self._thread.start()

    def _loop(self, pending: queue.SimpleQueue) -> None:
        db = None
        while (first := pending.get()) is not None:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    pending.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                db = db or self._connect()
                self._commit(db, batch)
            except Exception as exc:  # noqa: BLE001 - connect failed, or a bug: fail the callers, never hang them
                for item in batch:
                    item.result, item.error = None, exc
            for item in batch:
                self._ended(item)
        if db is not None:
            db.close()

    def _commit(self, db: sqlite3.Connection, batch: list[_Pending]) -> None:
        try:
            db.execute("BEGIN IMMEDIATE")
            for item in batch:
                try:
                    item.result = item.op(db)
                except sqlite3.OperationalError:
                    raise  # locked, disk full, I/O error: the transaction's fate is SQLite's, fail them all
                except Exception as exc:  # noqa: BLE001 - this write's own failure: the others stand
                    item.error = exc
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the next BEGIN fails too, and says so to its callers
            for item in batch:
                item.result, item.error = None, exc

    def _ended(self, item: _Pending) -> None:
        if item.then is None:
            item.done.release()
            return
        error = item.error
        if isinstance(error, sqlite3.Error):
            error = self._failed(error)
            error.__cause__ = item.error
        try:
            item.then(None if error else item.result, error)
        except Exception:  # noqa: BLE001 - a callback's bug must not stop the committer or its other callers
            structlog.get_logger("esb.store").exception("store_callback_failed")
