"""The dedup store: one record per (route, key) saying whether a message ran, is running, or died.

    absent ──claim──▶ in_progress ──finish──▶ done    a later copy is acked and never run
    dead ───claim──▶     │  ▲  │
                         │  │  └──mark_dead──▶ dead  after compensation; a replay claims it afresh
          record_step ───┘  └── claim by another worker once the lease is released, has
                                expired, or its owner process is gone: progress is kept

An in-progress record holds a lease (owner, expiry) and the completed side-effecting steps, so a
worker that takes over resumes after the last recorded step. Only the lease holder writes: a
worker that lost its lease gets `LeaseLost` from record_step, finish and mark_dead.

A dead record keeps the generations mark_dead was given (step label -> generation of the key sent
downstream for that step): the replay's claim returns them, so an effect that was compensated is
made again under a new key. `count_redelivery` counts the redeliveries of a message, to stop one
that kills its worker again and again.

A route without side-effecting steps may skip claim: `get`, run, then `finish` on the absent
record costs one write in all. Every time comes from the store's `clock` (time.time unless a
test gives another).

    records.py  StepRecord, Claim, Record, the errors and the IdempotencyStore protocol
    owners.py   owner ids and whether an owner's process is gone
    sqlite.py   SqliteStore (one machine)        redis.py  RedisStore (several machines, in memory)
    postgres.py PostgresStore (several machines, durable: the one for money)
    inbound.py  the SFTP inbound ledger: a SQLite file per machine, or the PostgreSQL store's table
    leases.py   named leases with a fencing token (`store.leases()`): one SFTP poller per inbound
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable

from esb.errors import ConfigError
from esb.store.inbound import InboundLedger, SqliteInboundLedger, inbound_ledger
from esb.store.owners import _HOST, _owner_alive, owner_id
from esb.store.postgres import PostgresStore
from esb.store.records import (
    BUSY,
    CLAIMED,
    DEAD,
    DEFAULT_DONE_TTL,
    DONE,
    IN_PROGRESS,
    REDELIVERY_TTL,
    Claim,
    IdempotencyStore,
    LeaseLost,
    Record,
    StepRecord,
    StoreUnavailable,
)
from esb.store.redis import RedisStore
from esb.store.sqlite import SqliteStore

KINDS = ("sqlite", "redis", "postgres")

__all__ = ["BUSY", "CLAIMED", "DEAD", "DEFAULT_DONE_TTL", "DONE", "IN_PROGRESS", "KINDS", "REDELIVERY_TTL", "_HOST",
           "Claim", "IdempotencyStore", "InboundLedger", "LeaseLost", "PostgresStore", "Record", "RedisStore",
           "SqliteInboundLedger", "SqliteStore", "StepRecord", "StoreUnavailable", "_owner_alive", "inbound_ledger",
           "open_store", "owner_id"]


def open_store(kind: str, path: str, url: str, *, clock: Callable[[], float] = time.time) -> IdempotencyStore:
    """The store the settings name: `sqlite` (one machine, at `path`), `redis` or `postgres` (at `url`)."""
    if kind == "sqlite":
        return SqliteStore(path, clock=clock)
    if kind == "redis":
        return RedisStore(url, clock=clock)
    if kind == "postgres":
        return PostgresStore(url, clock=clock)
    near = difflib.get_close_matches(kind, KINDS, n=1)
    raise ConfigError(f"no such idempotency store: {kind!r}",
                      hint=f"did you mean {near[0]!r}?" if near else "use 'sqlite', 'redis' or 'postgres'")
