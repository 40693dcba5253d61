"""A stand-in general ledger for `esb demo` and the bus tests: it recognises repeats by
`Idempotency-Key`, as real ledger APIs do, and counts the effects it applied.

    ledger = StandInLedger().start()      # on top of StubHttpServer: ledger.url, ledger.server.requests
    ledger.fail_next("/vouchers", 503, times=2)
    ledger.effects    # {idempotency key: (method, path, body)} — one entry per real effect
    ledger.vouchers   # {ledger id: voucher} — the vouchers that exist now

A repeated key gets the first answer again, even for a voucher cancelled since (as real ledgers
do): a cancelled voucher posted again under its old key is not posted. DELETE /vouchers/{id}
cancels the voucher with that ledger id or voucher_no, and answers 204 whether it existed or not.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from esb.testing.http import RecordedRequest, StubHttpServer, StubResponse


class StandInLedger:
    def __init__(self, *, refuse_account: str = "9999", delay: float = 0.0):
        self.server = StubHttpServer()
        self.refuse_account = refuse_account
        self.delay = delay
        self.effects: dict[str, tuple[str, str, Any]] = {}
        self.vouchers: dict[str, Any] = {}
        self._answers: dict[str, StubResponse] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.server.set_default(self._handle)

    def start(self) -> StandInLedger:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> StandInLedger:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def fail_next(self, path: str, status: int, times: int = 1, **headers: str) -> None:
        """The next `times` requests to `path` fail with `status` (no effect applied)."""
        for _ in range(times):
            self.server.enqueue(path, status, {"error": f"stand-in failure {status}"}, headers)

    def _handle(self, request: RecordedRequest) -> StubResponse:
        key = request.headers.get("Idempotency-Key") or f"no-key-{next(self._numbers)}"
        with self._lock:
            if key in self._answers:  # a repeat: the first answer again, no second effect
                return self._answers[key]
            answer = self._apply(request)
            if answer.status < 300:
                self.effects[key] = (request.method, request.path, request.body)
                self._answers[key] = answer
        return StubResponse(answer.status, answer.body, answer.headers, self.delay)

    def _apply(self, request: RecordedRequest) -> StubResponse:
        method, path = request.method, request.path
        if method == "POST" and path == "/vouchers":
            voucher = request.json()
            lines = [*voucher.get("entries", []), *voucher.get("lines", [])]
            accounts = {str(line.get("account")) for line in lines if isinstance(line, dict)}
            if self.refuse_account in accounts:
                return StubResponse(422, {"error": f"account {self.refuse_account} does not exist"})
            voucher_id = f"LV{next(self._numbers):06d}"
            self.vouchers[voucher_id] = voucher
            return StubResponse(201, {"voucher_id": voucher_id, "status": "posted"})
        if method == "DELETE" and path.startswith("/vouchers/"):
            number = path.removeprefix("/vouchers/")
            for voucher_id, voucher in list(self.vouchers.items()):
                if number in (voucher_id, voucher.get("voucher_no")):
                    del self.vouchers[voucher_id]
            return StubResponse(204)
        if method == "POST" and path == "/entries":
            return StubResponse(201, {"batch_id": f"EB{next(self._numbers):06d}", "status": "posted"})
        if method == "PATCH" and path.startswith("/payment-orders/"):
            return StubResponse(200, {"status": "updated"})
        return StubResponse(404, {"error": f"no such ledger endpoint: {method} {path}"})
