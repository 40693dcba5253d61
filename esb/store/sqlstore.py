"""What the SQLite and PostgreSQL stores share: every change but claim and finish_many is one
statement whose WHERE clause checks the lease holder, so the methods are the same and only the
SQL (placeholders, table names) and the way a statement runs differ.

A subclass sets `SQL` (its Statements) and gives `_write(sql, params) -> bool` (whether a row
changed), `_one(sql, params)` (the first row of a read) and `_returning(sql, params)` (the first
row of a write with RETURNING, committed when it returns), and a `_clock`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from esb.store.records import (
    DEAD,
    DONE,
    IN_PROGRESS,
    REDELIVERY_TTL,
    LeaseLost,
    Record,
    StepRecord,
    generations_of,
    generations_text,
    lease_lost,
    outcome_of,
    progress_of,
    step_line,
)
from esb.transform import jsoncodec

PURGE_EVERY = 3600.0  # seconds of the clock between two purges of old redelivery counts by one store


@dataclasses.dataclass(frozen=True)
class Statements:
    record_step: str
    release: str
    finish: str
    mark_dead: str
    get: str
    count_redelivery: str
    purge_redeliveries: str
    forget_redeliveries: str


class SqlStore:
    SQL: Statements

    def record_step(self, route: str, key: str, owner: str, record: StepRecord) -> None:
        if not self._write(self.SQL.record_step, self._step_params(route, key, owner, record)):
            raise lease_lost(route, key, owner, "record a step", self.get(route, key))

    def _step_params(self, route: str, key: str, owner: str, record: StepRecord) -> tuple:
        """The parameters of SQL.record_step: the step's line appended, the lease renewed from now."""
        now = self._clock()
        return step_line(record), now, now, route, key, owner

    def release(self, route: str, key: str, owner: str) -> None:
        """Drop the lease, keep the progress. A no-op when `owner` no longer holds the record."""
        self._write(self.SQL.release, (self._clock(), route, key, owner))

    def finish(self, route: str, key: str, owner: str, outcome: dict) -> None:
        if not self._write(self.SQL.finish, self._finish_params(route, key, owner, outcome)):
            self._unless_already(DONE, route, key, owner, "finish")

    def _finish_params(self, route: str, key: str, owner: str, outcome: dict) -> tuple:
        """The parameters of SQL.finish."""
        return route, key, owner, jsoncodec.dumps(outcome), self._clock()

    def mark_dead(self, route: str, key: str, owner: str, generations: Mapping[str, int] | None = None) -> None:
        """Dead-letter the record; `generations` replace its generations (None keeps them). An
        absent key stays absent: it never ran a recorded step, so there is nothing to keep."""
        params = (generations_text(generations), self._clock(), route, key, owner)
        if not self._write(self.SQL.mark_dead, params):
            self._unless_already(DEAD, route, key, owner, "mark it dead")

    def count_redelivery(self, route: str, message_id: str) -> int:
        """One more redelivery of this message seen: how many so far (1 the first time). Counts not
        touched for REDELIVERY_TTL are deleted on the first count and then once an hour of the clock."""
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY
            self._write(self.SQL.purge_redeliveries, (now - REDELIVERY_TTL,))
        return self._returning(self.SQL.count_redelivery, (route, message_id, now))[0]

    def forget_redeliveries(self, route: str, message_id: str) -> None:
        """The message was dead-lettered for its redeliveries: a replay starts counting afresh."""
        self._write(self.SQL.forget_redeliveries, (route, message_id))

    def get(self, route: str, key: str) -> Record | None:
        row = self._one(self.SQL.get, (route, key))
        if row is None:
            return None
        state, owner, lease_until, progress, outcome, updated_at, generations = row
        return Record(state, owner, lease_until if state == IN_PROGRESS and owner else None,
                      progress_of(progress), outcome_of(outcome), updated_at, generations_of(generations))

    def _finish_error(self, route: str, key: str, owner: str) -> LeaseLost | None:
        try:
            self._unless_already(DONE, route, key, owner, "finish")
        except LeaseLost as lost:
            return lost
        return None

    def _unless_already(self, state: str, route: str, key: str, owner: str, action: str) -> None:
        """A repeat of the same finish or mark_dead, or a dead-letter of an absent key, is fine."""
        record = self.get(route, key)
        if not (record is None and state == DEAD) and not (record and record.state == state
                                                           and record.owner == owner):
            raise lease_lost(route, key, owner, action, record)
