"""Retry tiers: which delay a failed message waits out, and the sealed state it waits with.

A message waits in `<route>.retry.<ms>ms` (queue TTL, then the broker dead-letters it back to the
route's queue), carrying its state so that it resumes at the failing step. A copy whose key is
held by another worker (`busy`) waits too, longer each time, and at most MAX_BUSY times.
"""

from __future__ import annotations

import datetime

from esb.message import Message
from esb.runtime.attempt import Attempt
from esb.runtime.broker import Outgoing
from esb.runtime.envelope import to_outgoing
from esb.runtime.state import RetryState, Seal, state_headers

MAX_BUSY = 10  # waits of a copy whose key stays in progress elsewhere with no lease left, then a dead letter
# While the holder's lease runs (and it renews it with each recorded step) a copy waits without
# counting: a holder on a machine that died keeps its lease until it expires, and ten short waits
# (a route whose tiers are a few seconds) ended long before that (found by `make cluster-test`).
# This bounds the waiting anyway, whatever the clocks say.
MAX_BUSY_IN_LEASE = 1000


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def tier_for(tiers: tuple[int, ...], next_attempt: int, retry_after: float | None = None) -> int:
    """The delay (ms) before attempt `next_attempt`; a Retry-After picks the first tier that long."""
    base = tiers[max(0, min(next_attempt - 2, len(tiers) - 1))] if tiers else 1000
    if retry_after:
        longer = [t for t in tiers if t >= retry_after * 1000]
        return max(base, min(longer)) if longer else max(tiers or (base,))
    return base


def busy_tier(tiers: tuple[int, ...], busy: int, lease_left: float | None) -> int:
    """A busy copy waits half a second, doubling each time, never much past the holder's lease."""
    wanted = 500 * 2 ** busy
    if lease_left is not None:
        wanted = min(wanted, max(500, int(lease_left * 1000)))
    longer = [t for t in tiers if t >= wanted]
    return min(longer) if longer else max(tiers or (1000,))


def state_message(attempt: Attempt, message: Message, index: int, next_attempt: int, seal: Seal,
                  busy: int = 0) -> Outgoing:
    """The message as it stands, with the sealed state that resumes it at step `index`."""
    body, content_type, headers = attempt.original
    state = RetryState(next_attempt, index, tuple(attempt.compensations), attempt.state.first_failure or now_iso(),
                       body, content_type or "", headers, attempt.key, dict(attempt.generations), busy)
    outgoing = to_outgoing(message, state_headers(state))
    return Outgoing(outgoing.body, outgoing.content_type,
                    seal.sealed(attempt.route, outgoing.message_id, outgoing.body, outgoing.headers),
                    outgoing.message_id)

