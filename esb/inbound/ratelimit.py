"""A token bucket per client address: `rate` requests per second, bursts of up to `burst`."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable

MAX_CLIENTS = 10_000  # buckets kept; past it the least recently seen client starts afresh


class RateLimiter:
    def __init__(self, rate: float, burst: int | None = None, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_CLIENTS):
        self.rate = rate
        self.burst = float(burst or max(1, math.ceil(rate)))
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()  # tokens, at
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when `client` may send now (a token is taken), else the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait
