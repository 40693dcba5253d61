"""What only one backend or no backend at all does: owner ids, SQLite's file, Redis expiry and errors."""

import os
import socket
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from esb.errors import ConfigError
from esb.store import REDELIVERY_TTL, RedisStore, SqliteStore, StoreUnavailable, _owner_alive, open_store, owner_id
from esb.store.records import DEAD, DONE, IN_PROGRESS

OLD_SCHEMA = """
CREATE TABLE idempotency (
    route TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0, lease_seconds REAL NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '', outcome TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (route, key)
) WITHOUT ROWID
"""
WEEK = 7 * 24 * 3600


def test_owner_ids_name_this_host_and_process_and_differ_each_time():
    first, second = owner_id(), owner_id()
    host, pid, _ = first.split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert first != second


def test_an_owner_on_another_host_or_with_a_foreign_name_is_assumed_alive():
    assert _owner_alive("some-other-host:1:abc")
    assert _owner_alive("not-an-owner-id")
    assert _owner_alive(owner_id())


def test_an_unknown_store_kind_is_refused_with_the_nearest_name():
    with pytest.raises(ConfigError, match="did you mean 'sqlite'"):
        open_store("sqlit", "var/x.sqlite3", "redis://127.0.0.1:6379/0")


def test_the_sqlite_store_creates_its_folders_and_writes_ahead(tmp_path):
    path = tmp_path / "deep" / "var" / "idempotency.sqlite3"
    store = SqliteStore(path)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_done_and_dead_redis_records_expire_but_work_in_progress_does_not(redis_url):
    route, owner = f"test-{uuid.uuid4().hex}", owner_id()
    store = RedisStore(redis_url, done_ttl_seconds=600)
    client = redis.Redis.from_url(redis_url)
    try:
        for key in ("done", "dead", "replayed"):
            store.claim(route, key, owner, 60)
        store.finish(route, "done", owner, {})
        store.mark_dead(route, "dead", owner)
        store.mark_dead(route, "replayed", owner)
        store.claim(route, "replayed", owner, 60)
        ttls = {key: client.ttl(store.key(route, key)) for key in ("done", "dead", "replayed")}
        assert 590 < ttls["done"] <= 600 and 590 < ttls["dead"] <= 600
        assert ttls["replayed"] == -1
    finally:
        client.delete(*(store.key(route, key) for key in ("done", "dead", "replayed")))
        client.close()
        store.close()


def test_an_unreachable_redis_is_a_transient_error_that_hides_the_password():
    store = RedisStore("redis://esb:s3cret@127.0.0.1:1/0", socket_timeout=2)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.claim("r", "k", owner_id(), 60)
    finally:
        store.close()
    assert "s3cret" not in str(caught.value) and "127.0.0.1:1" in str(caught.value)


def test_a_redis_route_name_with_a_colon_is_refused(redis_url):
    store = RedisStore(redis_url)
    try:
        with pytest.raises(ValueError, match="cannot contain ':'"):
            store.key("a:b", "c")
    finally:
        store.close()


def test_a_sqlite_store_made_before_generations_keeps_its_records_and_gains_them(tmp_path):
    path = tmp_path / "idempotency.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(OLD_SCHEMA)
        db.execute("INSERT INTO idempotency (route, key, state, owner, lease_until, updated_at) "
                   "VALUES ('r', 'C-1', 'in_progress', 'old-host:1:ab', 0, 1)")
    db.close()
    store = SqliteStore(path)
    try:
        record = store.get("r", "C-1")
        assert (record.state, record.generations) == (IN_PROGRESS, {})
        owner = owner_id()
        assert store.claim("r", "C-1", owner, 60).status == "claimed"
        store.mark_dead("r", "C-1", owner, {"post-voucher": 1})
        assert store.get("r", "C-1").generations == {"post-voucher": 1}
        assert SqliteStore(path).get("r", "C-1").state == DEAD  # a second opening finds the column there
    finally:
        store.close()


def test_a_sqlite_store_of_the_without_rowid_layout_moves_every_record_once_even_opened_by_two_at_once(tmp_path):
    path = tmp_path / "idempotency.sqlite3"
    old = SqliteStore(path)  # made as the layout was until 2026-12: records keyed by (route, key), no rowid
    old.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE idempotency")
        db.execute(OLD_SCHEMA)
        db.execute("ALTER TABLE idempotency ADD COLUMN generations TEXT NOT NULL DEFAULT ''")
        db.executemany("INSERT INTO idempotency VALUES ('r', ?, ?, ?, ?, 60, ?, ?, 7, ?)", [
            ("C-1", "done", None, 0, "", '{"dropped": false}', ""),
            ("C-2", "in_progress", "old-host:1:ab", 99, '{"index": 0, "label": "post", "state": {}, '
             '"compensation": null}\n', None, ""),
            ("C-3", "dead", None, 0, "", None, '{"post-voucher": 2}')])
    db.close()
    with ThreadPoolExecutor(2) as pool:  # two workers starting on the old file
        stores = list(pool.map(lambda _: SqliteStore(path), range(2)))
    try:
        store = stores[0]
        assert store.get("r", "C-1").state == DONE and store.get("r", "C-1").outcome == {"dropped": False}
        resumed = store.get("r", "C-2")
        assert (resumed.state, resumed.owner, [s.label for s in resumed.progress]) == \
            (IN_PROGRESS, "old-host:1:ab", ["post"])
        assert store.get("r", "C-3").generations == {"post-voucher": 2}
        assert store.claim("r", "C-1", owner_id(), 60).status == "done"   # the moved records still decide claims
        assert store.claim("r", "C-4", owner_id(), 60).status == "claimed"
        with sqlite3.connect(path) as db:
            layout = db.execute("SELECT sql FROM sqlite_master WHERE name = 'idempotency'").fetchone()[0]
            count = db.execute("SELECT count(*) FROM idempotency").fetchone()[0]
            tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        db.close()
        assert "WITHOUT ROWID" not in layout and count == 4 and "idempotency_without_rowid" not in tables
    finally:
        for store in stores:
            store.close()


def test_sqlite_redelivery_counts_untouched_for_a_week_are_purged_within_the_hour_and_count_from_one(tmp_path, clock):
    store = SqliteStore(tmp_path / "idempotency.sqlite3", clock=clock)
    try:
        assert store.count_redelivery("r", "quiet") == 1
        clock.advance(WEEK - 60)
        assert store.count_redelivery("r", "busy") == 1
        clock.advance(3600)  # a store purges once an hour: "quiet" untouched for over a week, "busy" an hour
        assert store.count_redelivery("r", "busy") == 2
        assert store.count_redelivery("r", "quiet") == 1
        with sqlite3.connect(store.path) as db:
            assert db.execute("SELECT count(*) FROM redeliveries").fetchone() == (2,)
        db.close()
    finally:
        store.close()


def test_a_redis_redelivery_count_expires_a_week_after_its_last_count(redis_url):
    route = f"test-{uuid.uuid4().hex}"
    store = RedisStore(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        store.count_redelivery(route, "msg-1")
        client.expire(store.redelivery_key(route, "msg-1"), 5)
        assert store.count_redelivery(route, "msg-1") == 2
        assert WEEK - 5 < client.ttl(store.redelivery_key(route, "msg-1")) <= WEEK == REDELIVERY_TTL
    finally:
        client.delete(store.redelivery_key(route, "msg-1"))
        client.close()
        store.close()


def test_an_unreachable_redis_fails_a_redelivery_count_as_a_transient_error():
    store = RedisStore("redis://esb:s3cret@127.0.0.1:1/0", socket_timeout=2)
    try:
        with pytest.raises(StoreUnavailable, match="127.0.0.1:1"):
            store.count_redelivery("r", "msg-1")
    finally:
        store.close()
