"""The replay ledger: which dead letters were replayed, so that none is replayed twice by accident.

A dead letter is named by its route, its message id and when it died (its sealed `last-failure`
time; a dead letter esb did not seal, by a digest of its body). A message that was replayed and
died again is a new dead letter (it died later) and may be replayed; a second copy of one that
was replayed (the broker kept it when the replay's ack was lost, or someone copied it back) is
the same dead letter and is refused unless the operator says `--again`.

A replay claims the dead letter here before it republishes it and gives the claim back if the
republish fails: two operators replaying at once never both send it. A crash between the claim
and the republish leaves a claim for a letter never sent; the operator sees "already replayed"
and uses `--again`, which is the safe side.

The ledger is one SQLite file of this machine (`dlq.ledger`, default var/dlq-replays.sqlite3);
operators on several machines need it shared, which the scale-out work moves to PostgreSQL with
the idempotency store.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from esb.errors import EsbError

SCHEMA = """
CREATE TABLE IF NOT EXISTS replayed (
    route TEXT NOT NULL, message_id TEXT NOT NULL, died TEXT NOT NULL,
    replayed_at TEXT NOT NULL, user TEXT NOT NULL,
    PRIMARY KEY (route, message_id, died))
"""


@dataclasses.dataclass(frozen=True)
class Replay:
    """One earlier replay of a dead letter."""

    message_id: str
    died: str          # the dead letter's last-failure time (or unsealed:<digest>)
    replayed_at: str
    user: str


class ReplayLedger:
    """The replayed dead letters, in one SQLite file."""

    def __init__(self, path: Path | str):
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=10, isolation_level=None)
            self._db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise EsbError(f"cannot open the replay ledger {path}: {exc}") from None

    def claim(self, route: str, message_id: str, died: str, *, at: str, user: str,
              again: bool = False) -> Replay | None:
        """Mark this dead letter replayed; None if it now is, else the earlier replay (nothing changed).
        With `again`, an earlier replay is overwritten by this one."""
        verb = "INSERT OR REPLACE" if again else "INSERT OR IGNORE"
        if self._db.execute(f"{verb} INTO replayed VALUES (?, ?, ?, ?, ?)",
                            (route, message_id, died, at, user)).rowcount:
            return None
        return self.earlier(route, message_id, died)

    def release(self, route: str, message_id: str, died: str, *, at: str, restore: Replay | None = None) -> None:
        """Undo this command's claim (its republish failed), putting back the replay it overwrote, if any."""
        self._db.execute("DELETE FROM replayed WHERE route = ? AND message_id = ? AND died = ? AND replayed_at = ?",
                         (route, message_id, died, at))
        if restore is not None:
            self._db.execute("INSERT OR IGNORE INTO replayed VALUES (?, ?, ?, ?, ?)",
                             (route, restore.message_id, restore.died, restore.replayed_at, restore.user))

    def earlier(self, route: str, message_id: str, died: str) -> Replay | None:
        return self._one("WHERE route = ? AND message_id = ? AND died = ?", (route, message_id, died))

    def last(self, route: str, message_id: str) -> Replay | None:
        """The latest replay of any dead letter with this message id."""
        return self._one("WHERE route = ? AND message_id = ? ORDER BY replayed_at DESC LIMIT 1", (route, message_id))

    def close(self) -> None:
        self._db.close()

    def _one(self, where: str, args: tuple) -> Replay | None:
        row = self._db.execute(f"SELECT message_id, died, replayed_at, user FROM replayed {where}", args).fetchone()
        return Replay(*row) if row else None
