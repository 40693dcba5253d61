"""Whether a webhook request comes from its sender: an HMAC signature with a timestamp window and
replay refusal, an API key, or a bearer token. Every comparison is in constant time."""

from __future__ import annotations

import collections
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Mapping

from esb.routes.model import HttpAuth

MAX_REMEMBERED = 100_000  # signatures kept for replay refusal; past it the oldest is forgotten


class Refused(Exception):
    """The request failed authentication; the text says why (it is sent back: it names no secret)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature a sender puts in the signature header: hex HMAC-SHA256 of `TIMESTAMP.BODY`."""
    return hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


class Verifier:
    """Checks one route's requests. A signature is reserved by `check` (a replay is refused) and
    `released` when its message could not be published, so a request answered 503 may be sent again."""

    def __init__(self, auth: HttpAuth, clock: Callable[[], float] = time.time, remember: int = MAX_REMEMBERED):
        if not auth.secret:
            raise ValueError(f"the variable {auth.secret_env} is not set")
        self.auth = auth
        self._secret = auth.secret.encode("utf-8")
        self._clock = clock
        self._seen = Replays(auth.window, remember, clock)

    def check(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Raise Refused unless the request is authentic; `headers` are keyed by lower-case name."""
        kind = self.auth.kind
        if kind == "bearer":
            scheme, _, token = headers.get("authorization", "").partition(" ")
            return self._equal(token.strip() if scheme.lower() == "bearer" else "", "bearer token")
        if kind == "api_key":
            return self._equal(headers.get(self.auth.header.lower(), ""), f"API key ({self.auth.header})")
        return self._signed(headers, body)

    def released(self, token: str | None) -> None:
        """The request was not accepted after all: its signature may come again."""
        if token is not None:
            self._seen.release(token)

    def _equal(self, given: str, what: str) -> None:  # nothing to release
        if not given:
            raise Refused(f"the request has no {what}")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self._secret):
            raise Refused(f"the {what} is wrong")
        return None

    def _signed(self, headers: Mapping[str, str], body: bytes) -> str:
        given = headers.get(self.auth.header.lower(), "").removeprefix("sha256=").strip().lower()
        stamp = headers.get(self.auth.timestamp_header.lower(), "").strip()
        if not given or not stamp:
            raise Refused(f"the request needs a signature ({self.auth.header}) and a timestamp "
                          f"({self.auth.timestamp_header})")
        if not stamp.isdigit() or len(stamp) > 12:
            raise Refused(f"the timestamp ({self.auth.timestamp_header}) is not Unix seconds")
        if abs(self._clock() - int(stamp)) > self.auth.window:
            raise Refused(f"the timestamp is more than {self.auth.window:g}s from now: resign the request")
        expected = sign(self.auth.secret, stamp, body)
        if not hmac.compare_digest(given.encode("ascii", "replace"), expected.encode("ascii")):
            raise Refused("the signature does not match the body")
        if not self._seen.reserve(expected):
            raise Refused("this signed request was received already (a replay)")
        return expected


class Replays:
    """Signatures seen within the window: reserved while their message is published, then kept until
    they are older than the window (a stale timestamp is refused anyway). Bounded: past `limit`
    entries the oldest is forgotten."""

    def __init__(self, window: float, limit: int, clock: Callable[[], float]):
        self.window, self.limit, self.clock = window, limit, clock
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()  # signature -> seen at
        self._lock = threading.Lock()

    def reserve(self, signature: str) -> bool:
        now = self.clock()
        with self._lock:
            while self._seen and (len(self._seen) >= self.limit
                                  or next(iter(self._seen.values())) < now - 2 * self.window):
                self._seen.popitem(last=False)
            if signature in self._seen:
                return False
            self._seen[signature] = now
            return True

    def release(self, signature: str) -> None:
        with self._lock:
            self._seen.pop(signature, None)
