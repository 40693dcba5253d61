"""The shared dedup store for workers on several machines: one Redis hash per record."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from esb.store import leases
from esb.store.owners import _owner_alive
from esb.store.records import (
    BUSY,
    CLAIMED,
    DEAD,
    DEFAULT_DONE_TTL,
    DONE,
    IN_PROGRESS,
    REDELIVERY_TTL,
    Claim,
    LeaseLost,
    Record,
    StepRecord,
    StoreUnavailable,
    generations_of,
    generations_text,
    lease_lost,
    outcome_of,
    progress_of,
    redacted,
    step_line,
)
from esb.transform import jsoncodec

# Every script gets the time from the store's clock as its last argument, in milliseconds: the
# workers' clocks must agree (NTP) to well within a lease, as they must for the SQLite store.

# ARGV: owner, lease ms, a holder the caller found to be a dead process ('' if none), now.
# A dead record replayed keeps its generations.
_CLAIM_LUA = """
local now = tonumber(ARGV[4])
local r = redis.call('HMGET', KEYS[1], 'state', 'owner', 'lease_until', 'progress', 'outcome', 'generations')
local state, holder, generations = r[1], r[2] or '', r[6] or ''
if state == 'done' then return {'done', r[5]} end
local fresh = (not state) or state == 'dead'
if not fresh and holder ~= '' and holder ~= ARGV[1] and holder ~= ARGV[3]
        and tonumber(r[3]) > now then
    return {'busy', holder, r[3]}
end
local progress = ''
if fresh then
    redis.call('DEL', KEYS[1])  -- a dead record's expiry goes with it
else
    progress = r[4] or ''
end
redis.call('HSET', KEYS[1], 'state', 'in_progress', 'owner', ARGV[1], 'lease_until',
           now + tonumber(ARGV[2]), 'lease_ms', ARGV[2], 'progress', progress, 'updated_at', now,
           'generations', generations)
return {'claimed', progress, generations}
"""

# ARGV: owner, step line, now. Returns 1, or 0 when the owner does not hold the record.
_RECORD_STEP_LUA = """
local r = redis.call('HMGET', KEYS[1], 'state', 'owner', 'lease_ms', 'progress')
if r[1] ~= 'in_progress' or r[2] ~= ARGV[1] then return 0 end
local now = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'progress', (r[4] or '') .. ARGV[2],
           'lease_until', now + tonumber(r[3]), 'updated_at', now)
return 1
"""

# ARGV: owner, now.
_RELEASE_LUA = """
local r = redis.call('HMGET', KEYS[1], 'state', 'owner')
if r[1] ~= 'in_progress' or r[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '', 'lease_until', 0, 'updated_at', ARGV[2])
return 1
"""

# ARGV: owner, final state ('done' | 'dead'), outcome JSON ('' for dead), ttl ms, generations
# JSON ('' keeps the record's), now.
# Returns 1 when the record is (now) in that state by this owner, 0 when the lease was lost.
# An absent record may be finished (a route without side effects skips claim); an absent
# record that dead-letters stays absent, which a replay claims just as it would a dead one.
_SETTLE_LUA = """
local r = redis.call('HMGET', KEYS[1], 'state', 'owner', 'generations')
if r[1] == ARGV[2] and r[2] == ARGV[1] then return 1 end
if not r[1] and ARGV[2] == 'dead' then return 1 end
if r[1] and not (r[1] == 'in_progress' and r[2] == ARGV[1]) then return 0 end
local generations = ARGV[5]
if generations == '' then generations = r[3] or '' end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'owner', ARGV[1], 'outcome', ARGV[3], 'updated_at', ARGV[6],
           'generations', generations)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


# A lease is a hash esb:lease:<name> {owner, token, until (ms)} that never expires: the token
# must count on across holders. ARGV: owner, ttl ms, a holder found to be a dead process ('' if
# none), now. Returns the token, or false when another owner holds the lease.
_ACQUIRE_LUA = """
local now = tonumber(ARGV[4])
local r = redis.call('HMGET', KEYS[1], 'owner', 'token', 'until')
local holder, token, expiry = r[1], tonumber(r[2] or '0'), tonumber(r[3] or '0')
if holder and holder ~= ARGV[1] and holder ~= ARGV[3] and expiry > now then return false end
if not (holder == ARGV[1] and expiry > now) then token = token + 1 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'until', now + tonumber(ARGV[2]))
return token
"""

# ARGV: owner, token, new until (ms; 0 releases). Returns 1, or 0 when the lease changed hands.
_RENEW_LUA = """
local r = redis.call('HMGET', KEYS[1], 'owner', 'token')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'until', ARGV[3])
return 1
"""


class RedisStore:
    """The shared store for workers on several machines: one hash per record, each change one Lua script.

    Keys are `esb:idem:<route>:<key>`; route names cannot hold a colon, so no two records share a
    key. Done and dead records expire after `done_ttl_seconds`; a copy arriving later runs again.
    Redelivery counts are `esb:redelivered:<route>:<message id>`, each expiring a week
    (REDELIVERY_TTL) after its last count.
    """

    def __init__(self, url: str, *, done_ttl_seconds: float = DEFAULT_DONE_TTL, prefix: str = "esb:idem",
                 redelivery_prefix: str = "esb:redelivered", socket_timeout: float = 5.0,
                 clock: Callable[[], float] = time.time):
        import redis  # only a Redis deployment needs the package

        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=socket_timeout,
                                           socket_connect_timeout=socket_timeout)
        self._url = url
        self._prefix = prefix
        self._redelivery_prefix = redelivery_prefix
        self._clock = clock
        self._ttl_ms = int(done_ttl_seconds * 1000)
        self._claim = self._redis.register_script(_CLAIM_LUA)
        self._record_step = self._redis.register_script(_RECORD_STEP_LUA)
        self._release = self._redis.register_script(_RELEASE_LUA)
        self._settle = self._redis.register_script(_SETTLE_LUA)
        self._lease_prefix = "esb:lease"

    def key(self, route: str, key: str) -> str:
        return f"{self._prefix}:{_route(route)}:{key}"

    def redelivery_key(self, route: str, message_id: str) -> str:
        return f"{self._redelivery_prefix}:{_route(route)}:{message_id}"

    def claim(self, route: str, key: str, owner: str, lease_seconds: float) -> Claim:
        args = [owner, int(lease_seconds * 1000), "", self._now_ms()]
        reply = self._call(self._claim, route, key, args)
        if reply[0] == BUSY and not _owner_alive(reply[1]):
            reply = self._call(self._claim, route, key, [owner, args[1], reply[1], self._now_ms()])
        status = reply[0]
        if status == DONE:
            return Claim(DONE, outcome=outcome_of(reply[1]))
        if status == BUSY:
            return Claim(BUSY, lease_until=int(reply[2]) / 1000)
        return Claim(CLAIMED, progress_of(reply[1]), generations=generations_of(reply[2]))

    def record_step(self, route: str, key: str, owner: str, record: StepRecord) -> None:
        if not self._call(self._record_step, route, key, [owner, step_line(record), self._now_ms()]):
            raise lease_lost(route, key, owner, "record a step", self.get(route, key))

    def release(self, route: str, key: str, owner: str) -> None:
        """Drop the lease, keep the progress. A no-op when `owner` no longer holds the record."""
        self._call(self._release, route, key, [owner, self._now_ms()])

    def finish(self, route: str, key: str, owner: str, outcome: dict) -> None:
        if not self._call(self._settle, route, key, self._settle_args(owner, DONE, jsoncodec.dumps(outcome))):
            raise lease_lost(route, key, owner, "finish", self.get(route, key))

    def finish_many(self, route: str, finished: list[tuple[str, str, dict]]) -> list[LeaseLost | None]:
        """`finish` for each (key, owner, outcome), in one round trip (a pipeline)."""
        with self._translated():
            pipe = self._redis.pipeline(transaction=False)
            for key, owner, outcome in finished:
                self._settle(keys=[self.key(route, key)], args=self._settle_args(owner, DONE, jsoncodec.dumps(outcome)),
                             client=pipe)
            results = pipe.execute()
        return [None if ok else lease_lost(route, key, owner, "finish", self.get(route, key))
                for (key, owner, _), ok in zip(finished, results, strict=True)]

    def mark_dead(self, route: str, key: str, owner: str, generations: Mapping[str, int] | None = None) -> None:
        """Dead-letter the record; `generations` replace its generations (None keeps them). An
        absent key stays absent: it never ran a recorded step, so there is nothing to keep."""
        args = self._settle_args(owner, DEAD, "", generations_text(generations) or "")
        if not self._call(self._settle, route, key, args):
            raise lease_lost(route, key, owner, "mark it dead", self.get(route, key))

    def count_redelivery(self, route: str, message_id: str) -> int:
        """One more redelivery of this message seen: how many so far (1 the first time)."""
        name = self.redelivery_key(route, message_id)
        with self._translated():
            pipe = self._redis.pipeline(transaction=True)  # INCR and EXPIRE in one round trip
            pipe.incr(name)
            pipe.expire(name, REDELIVERY_TTL)
            count, _ = pipe.execute()
        return count

    def forget_redeliveries(self, route: str, message_id: str) -> None:
        """The message was dead-lettered for its redeliveries: a replay starts counting afresh."""
        with self._translated():
            self._redis.delete(self.redelivery_key(route, message_id))

    def get(self, route: str, key: str) -> Record | None:
        with self._translated():
            fields = self._redis.hgetall(self.key(route, key))
        if not fields:
            return None
        state, owner = fields["state"], fields.get("owner") or None
        lease_until = int(fields.get("lease_until") or 0) / 1000 if state == IN_PROGRESS and owner else None
        return Record(state, owner, lease_until, progress_of(fields.get("progress")),
                      outcome_of(fields.get("outcome")), int(fields["updated_at"]) / 1000,
                      generations_of(fields.get("generations")))

    def marks(self):
        """Named marks as keys esb:mark:<name> (esb.store.marks)."""
        from esb.store.marks import RedisMarks
        return RedisMarks(self)

    def leases(self) -> RedisLeases:
        """Named leases in this Redis, shared by every machine (one SFTP poller per inbound)."""
        return RedisLeases(self)

    def close(self) -> None:
        self._redis.close()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _settle_args(self, owner: str, state: str, outcome: str, generations: str = "") -> list:
        return [owner, state, outcome, self._ttl_ms, generations, self._now_ms()]

    def _call(self, script: Any, route: str, key: str, args: list) -> Any:
        with self._translated():
            return script(keys=[self.key(route, key)], args=args)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise StoreUnavailable(f"the idempotency store at {redacted(self._url)} failed: {exc}") from exc


class RedisLeases:
    """esb.store.leases.Leases in the store's Redis: one hash per lease, each change one Lua script."""

    def __init__(self, store: RedisStore):
        self._store = store
        self._acquire = store._redis.register_script(_ACQUIRE_LUA)
        self._renew = store._redis.register_script(_RENEW_LUA)

    def acquire(self, name: str, owner: str, ttl: float) -> int | None:
        def attempt(dead: str) -> int | None:
            with self._store._translated():
                token = self._acquire(keys=[self._key(name)], args=[owner, int(ttl * 1000), dead,
                                                                     self._store._now_ms()])
            return int(token) if token else None
        return leases.acquire(attempt, lambda: self.holder(name))

    def renew(self, name: str, owner: str, token: int, ttl: float) -> bool:
        return self._set_until(name, owner, token, self._store._now_ms() + int(ttl * 1000))

    def release(self, name: str, owner: str, token: int) -> None:
        self._set_until(name, owner, token, 0)

    def holder(self, name: str) -> leases.Lease | None:
        with self._store._translated():
            fields = self._store._redis.hgetall(self._key(name))
        until = int(fields.get("until") or 0)
        if not fields or until <= self._store._now_ms():
            return None
        return leases.Lease(name, fields["owner"], int(fields["token"]), until / 1000)

    def _set_until(self, name: str, owner: str, token: int, until_ms: int) -> bool:
        with self._store._translated():
            return bool(self._renew(keys=[self._key(name)], args=[owner, str(token), until_ms]))

    def _key(self, name: str) -> str:
        return f"{self._store._lease_prefix}:{name}"


def _route(route: str) -> str:
    if ":" in route:
        raise ValueError(f"a route name cannot contain ':' (got {route!r})")
    return route
