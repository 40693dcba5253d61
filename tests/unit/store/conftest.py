"""Fixtures of the store tests: the real Redis on 127.0.0.1:6379, and a clock the test moves by
hand, so a lease runs out without sleeping."""

from __future__ import annotations

import pytest
import redis

REDIS_URL = "redis://127.0.0.1:6379/0"
START_REDIS = "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no"


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
