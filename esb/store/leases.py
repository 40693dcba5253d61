"""Named leases in the shared store: one holder at a time for a job that must run on one machine
only (an SFTP inbound's poller; later a scheduled route), with a fencing token.

    free ──acquire──▶ held by A (token n) ──renew by A──▶ held by A (token n), later expiry
      ▲                  │          │
      └────release by A──┘          └──expires (or A's process is gone on this host)──▶ acquire by B: token n+1

`acquire` returns the token when the owner holds the lease afterwards (the same token while it
held it all along, the next one when it takes it afresh), else None. The token never goes down
for a name (the row is kept after release), so "I still hold token n" is exact: `renew` with a
token succeeds only when no one else took the lease since; a holder that was paused past its
lease (a long GC, a frozen VM) learns that it lost it before acting, not after.

The stores implement `Leases` (`store.leases()`); `Leadership` is how a repeating job uses one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from esb.store.owners import _owner_alive

# The SQL stores (SQLite and PostgreSQL; `?` becomes `%s`) take or extend a lease in one upsert,
# so two machines acquiring at once cannot both win. In DO UPDATE, `leases.x` is the row before
# the statement. Parameters: name, owner, until, now (3 times), a holder whose process is gone
# on this host ('' when none: see acquire).
ACQUIRE_SQL = """
INSERT INTO {table} AS leases (name, owner, token, lease_until, updated_at) VALUES (?, ?, 1, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    token = CASE WHEN leases.owner = excluded.owner AND leases.lease_until > ? THEN leases.token
                 ELSE leases.token + 1 END,
    owner = excluded.owner, lease_until = excluded.lease_until, updated_at = excluded.updated_at
WHERE leases.owner = excluded.owner OR leases.lease_until <= ? OR leases.owner = ?
RETURNING token
"""
# Parameters: until, now, name, owner, token.
RENEW_SQL = "UPDATE {table} SET lease_until = ?, updated_at = ? WHERE name = ? AND owner = ? AND token = ?"
# Parameters: now, name, owner, token. The row stays: the next token counts on from it.
RELEASE_SQL = "UPDATE {table} SET lease_until = 0, updated_at = ? WHERE name = ? AND owner = ? AND token = ?"
# Parameters: name, now.
HOLDER_SQL = "SELECT name, owner, token, lease_until FROM {table} WHERE name = ? AND lease_until > ?"


def sql(template: str, table: str, placeholder: str = "?") -> str:
    return template.format(table=table).replace("?", placeholder)


class SqlLeases:
    """Leases in a table of an SQL store (SQLite's `leases`, PostgreSQL's `esb_leases`), each change
    one statement, run by the store's `_one` and `_write` (esb.store.sqlstore)."""

    def __init__(self, store: Any, table: str, placeholder: str = "?"):
        self._store = store
        self._acquire, self._renew, self._release, self._holder = (
            sql(template, table, placeholder) for template in (ACQUIRE_SQL, RENEW_SQL, RELEASE_SQL, HOLDER_SQL))

    def acquire(self, name: str, owner: str, ttl: float) -> int | None:
        def attempt(dead: str) -> int | None:
            now = self._store._clock()
            row = self._store._returning(self._acquire, (name, owner, now + ttl, now, now, now, dead))
            return row[0] if row else None
        return acquire(attempt, lambda: self.holder(name))

    def renew(self, name: str, owner: str, token: int, ttl: float) -> bool:
        now = self._store._clock()
        return self._store._write(self._renew, (now + ttl, now, name, owner, token))

    def release(self, name: str, owner: str, token: int) -> None:
        self._store._write(self._release, (self._store._clock(), name, owner, token))

    def holder(self, name: str) -> Lease | None:
        row = self._store._one(self._holder, (name, self._store._clock()))
        return Lease(*row) if row else None


def acquire(attempt: Callable[[str], int | None], holder: Callable[[], Lease | None]) -> int | None:
    """`attempt(dead_holder)` with none; once more, naming the holder, when it is a process of
    this host that is gone (a worker killed on this machine does not hold its lease to the end)."""
    token = attempt("")
    if token is None:
        live = holder()
        if live is not None and not _owner_alive(live.owner):
            token = attempt(live.owner)
    return token


@dataclasses.dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    token: int          # the fencing token: goes up by one each time the lease changes hands
    until: float        # epoch seconds of the store's clock; 0 once released


class Leases(Protocol):
    """Failures are StoreUnavailable (a TransientError): the caller does not know, so it does not lead."""

    def acquire(self, name: str, owner: str, ttl: float) -> int | None: ...
    def renew(self, name: str, owner: str, token: int, ttl: float) -> bool: ...
    def release(self, name: str, owner: str, token: int) -> None: ...
    def holder(self, name: str) -> Lease | None: ...  # the live lease: None when free, released or expired


class Leadership:
    """One owner's hold on one lease, round after round: `lead()` at the top of each round takes
    or renews it; `still_leading()` re-checks it (with the token) before an action that must
    not be taken twice. Logs `<event>_leader` / `<event>_standby` when that changes, not each round."""

    def __init__(self, leases: Leases, name: str, owner: str, ttl: float, log: Any, event: str):
        self.leases, self.name, self.owner, self.ttl = leases, name, owner, ttl
        self.token: int | None = None
        self._log, self._event = log, event
        self._leading: bool | None = None  # None: not known yet (nothing logged)

    def lead(self) -> bool:
        """Whether this owner leads for the coming round (acquiring the lease, or renewing it)."""
        token = self.token
        if token is None or not self.leases.renew(self.name, self.owner, token, self.ttl):
            token = self.leases.acquire(self.name, self.owner, self.ttl)
        return self._now(token)

    def still_leading(self) -> bool:
        """Renew with the token: False when another owner took the lease since `lead()`."""
        return self.token is not None and self._now(
            self.token if self.leases.renew(self.name, self.owner, self.token, self.ttl) else None)

    def step_down(self) -> None:
        """Release the lease (a graceful stop): another owner may take it at once."""
        if self.token is not None:
            self.leases.release(self.name, self.owner, self.token)
            self._now(None)

    def _now(self, token: int | None) -> bool:
        leading = token is not None
        if leading != self._leading or (leading and token != self.token):
            if leading:
                self._log.info(f"{self._event}_leader", lease=self.name, owner=self.owner, token=token,
                               ttl=self.ttl)
            else:
                holder = self._holder()
                self._log.info(f"{self._event}_standby", lease=self.name, owner=self.owner,
                               leader=holder.owner if holder else None)
        self.token, self._leading = token, leading
        return leading

    def _holder(self) -> Lease | None:
        try:
            return self.leases.holder(self.name)
        except Exception:  # noqa: BLE001 - only for the log line; the store's failure is reported elsewhere
            return None
