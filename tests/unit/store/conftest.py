"""Fixtures of the store tests: the real Redis on 127.0.0.1:6379, the real PostgreSQL on
127.0.0.1:5432 (a schema of its own for each test), and a clock the test moves by hand, so a lease
runs out without sleeping."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
import redis
from psycopg.conninfo import make_conninfo

REDIS_URL = "redis://127.0.0.1:6379/0"
START_REDIS = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no"
POSTGRES_URL = os.environ.get("POSTGRES_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")
START_POSTGRES = "scripts/ensure-services (or: pg_ctlcluster --skip-systemctl-redirect 15 main start)"


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_url() -> str:
    """The URL of the Redis the tests use; fails with how to start it when it is not running."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not running on 127.0.0.1:6379; start it with: {START_REDIS}", pytrace=False)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def postgres_url() -> str:
    """A URL of the PostgreSQL the tests use whose tables go into a new schema, dropped after the
    test; fails with how to start PostgreSQL when it is not running."""
    schema = f"esb_test_{uuid.uuid4().hex}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as db:
            db.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL does not answer at {POSTGRES_URL} ({exc}); start it with: {START_POSTGRES}",
                    pytrace=False)
    yield make_conninfo(POSTGRES_URL, options=f"-csearch_path={schema}", application_name=schema)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as db:
        db.execute(f"DROP SCHEMA {schema} CASCADE")
