"""What the dedup store holds and answers (StepRecord, Claim, Record), its errors and its protocol."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Protocol

from esb.errors import TransientError
from esb.transform import jsoncodec

IN_PROGRESS, DONE, DEAD = "in_progress", "done", "dead"  # Record.state
CLAIMED, BUSY = "claimed", "busy"                        # Claim.status, besides DONE
DEFAULT_DONE_TTL = 30 * 24 * 3600                        # seconds a Redis done/dead record is kept
REDELIVERY_TTL = 7 * 24 * 3600                           # seconds a redelivery count outlives its last use


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """A completed side-effecting step: where it was, what the message became, how to undo it."""

    index: int                # top-level step index in the route
    label: str
    state: dict               # JSON-serialisable message state after the step
    compensation: dict | None = None


@dataclasses.dataclass(frozen=True)
class Claim:
    status: str                             # CLAIMED | DONE | BUSY
    progress: tuple[StepRecord, ...] = ()   # for CLAIMED: steps already done, to resume after
    outcome: dict | None = None             # for DONE
    lease_until: float | None = None        # for BUSY: when the holder's lease runs out (epoch s)
    # for CLAIMED: step label -> generation of the key sent downstream for that step, as the last
    # mark_dead left it (a compensated effect is replayed as a new effect, under a new key)
    generations: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Record:
    state: str                    # IN_PROGRESS | DONE | DEAD
    owner: str | None             # lease holder; for done/dead, the worker that got it there
    lease_until: float | None     # epoch seconds; None once released or finished
    progress: tuple[StepRecord, ...]
    outcome: dict | None
    updated_at: float
    generations: Mapping[str, int] = dataclasses.field(default_factory=dict)


class LeaseLost(TransientError):
    """Another worker took the record over; this one must stop writing to it."""


class StoreUnavailable(TransientError):
    """The store could not be reached or was locked for too long; worth retrying."""


class IdempotencyStore(Protocol):
    """A store may also offer `claim_later(route, key, owner, lease_seconds, then)`,
    `record_step_later(route, key, owner, record, then)` and `finish_later(route, key, owner,
    outcome, then)`: the same writes, answered through `then(result, error)` once committed, each
    committed before any later write of this process (SqliteStore). The runtime uses them when
    they are there (esb.runtime.worker)."""

    def claim(self, route: str, key: str, owner: str, lease_seconds: float) -> Claim: ...
    def record_step(self, route: str, key: str, owner: str, record: StepRecord) -> None: ...
    def release(self, route: str, key: str, owner: str) -> None: ...
    def finish(self, route: str, key: str, owner: str, outcome: dict) -> None: ...
    def finish_many(self, route: str, finished: list[tuple[str, str, dict]]) -> list[LeaseLost | None]: ...
    def mark_dead(self, route: str, key: str, owner: str,
                  generations: Mapping[str, int] | None = None) -> None: ...
    def count_redelivery(self, route: str, message_id: str) -> int: ...
    def forget_redeliveries(self, route: str, message_id: str) -> None: ...
    def get(self, route: str, key: str) -> Record | None: ...
    def close(self) -> None: ...


# Progress is stored as JSON lines so that recording a step is an append, not a read-modify-write.
# The encoder escapes every newline inside strings; split on "\n" only (splitlines would also
# split on U+2028 and friends, which the encoder leaves as they are).
def step_line(record: StepRecord) -> str:
    return jsoncodec.dumps({"index": record.index, "label": record.label, "state": record.state,
                            "compensation": record.compensation}) + "\n"


def progress_of(lines: str | None) -> tuple[StepRecord, ...]:
    return tuple(StepRecord(**jsoncodec.loads(line)) for line in (lines or "").split("\n") if line)


def outcome_of(text: str | None) -> dict | None:
    return jsoncodec.loads(text) if text else None


def generations_text(generations: Mapping[str, int] | None) -> str | None:
    """The generations as stored (JSON), or None: keep what the record holds."""
    if generations is None:
        return None
    bad = {label: n for label, n in generations.items()
           if not isinstance(label, str) or isinstance(n, bool) or not isinstance(n, int) or n < 0}
    if bad:
        raise ValueError(f"generations map a step label to a whole number >= 0, not {bad!r}")
    return jsoncodec.dumps(dict(sorted(generations.items())))


def generations_of(text: str | None) -> dict[str, int]:
    return jsoncodec.loads(text) if text else {}


def claim_existing(row: tuple | None, owner: str, now: float) -> tuple[str | None, Claim]:
    """What a claim of a key that already has a record does, from that record's row (state, owner,
    lease_until, progress, outcome, _, generations), read under the store's lock or transaction:
    ("fresh", claim) to claim it anew (dead, or gone meanwhile), ("resume", claim) to take the lease
    over (released, expired, or its owner's process is gone), (None, claim) to answer without writing."""
    from esb.store.owners import takes_over
    if row is None or row[0] == DEAD:
        return "fresh", Claim(CLAIMED, generations=generations_of(row[6] if row else None))
    state, holder, lease_until, progress, outcome, _, generations = row
    if state == DONE:
        return None, Claim(DONE, outcome=outcome_of(outcome))
    if not takes_over(holder, lease_until, owner, now):
        return None, Claim(BUSY, lease_until=lease_until)
    return "resume", Claim(CLAIMED, progress_of(progress), generations=generations_of(generations))


def lease_lost(route: str, key: str, owner: str, action: str, record: Record | None) -> LeaseLost:
    now = f"{record.state} (owner {record.owner})" if record else "absent"
    return LeaseLost(f"{owner} cannot {action} for {route}/{key}: the record is now {now}")


def redacted(url: str) -> str:
    """A store's URL (or libpq key=value string) without its password: errors end up in logs and
    dead-letter headers."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    shown = f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{host}" if at else url
    return re.sub(r"([?&]password=)[^&]*", r"\1***", shown)
