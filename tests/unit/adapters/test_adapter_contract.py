"""The adapter contract, written once and run against every adapter kind.

To add a kind, subclass `AdapterContract` as `Test<Kind>AdapterContract` (in this file, or in
another one with `from test_adapter_contract import AdapterContract`) and provide the four
fixtures `timing_out`, `rejecting`, `failing` and `succeeding`, each returning an `Endpoint`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from esb.adapters.base import Adapter, open_adapter
from esb.adapters.spec import AdapterSpec
from esb.errors import PermanentError, TransientError
from esb.message import Message
from esb.testing.http import StubHttpServer, StubResponse

TIMEOUT = 0.3  # the adapter's timeout in the timing-out case; the far side waits longer


@dataclasses.dataclass
class Endpoint:
    """An opened adapter, the operation to call, a message for it, and what the far side saw."""

    adapter: Adapter
    operation: str
    message: Message
    idempotency_keys: Callable[[], list[str]]  # the keys the far side received, oldest first


class AdapterContract:
    """What every adapter kind promises the pipeline."""

    @pytest.fixture
    def timing_out(self) -> Endpoint:
        pytest.fail("a contract subclass must provide `timing_out`: an endpoint slower than the adapter's "
                    f"timeout ({TIMEOUT}s)")

    @pytest.fixture
    def rejecting(self) -> Endpoint:
        pytest.fail("a contract subclass must provide `rejecting`: an endpoint refusing the request (4xx)")

    @pytest.fixture
    def failing(self) -> Endpoint:
        pytest.fail("a contract subclass must provide `failing`: an endpoint failing on its side (5xx)")

    @pytest.fixture
    def succeeding(self) -> Endpoint:
        pytest.fail("a contract subclass must provide `succeeding`: an endpoint that accepts every call")

    def test_a_call_that_times_out_raises_a_transient_error_soon_after_the_timeout(self, timing_out: Endpoint):
        started = time.monotonic()
        with pytest.raises(TransientError):
            _call(timing_out, "key-timeout")
        assert time.monotonic() - started < TIMEOUT + 1.0

    def test_a_rejected_call_raises_a_permanent_error(self, rejecting: Endpoint):
        with pytest.raises(PermanentError):
            _call(rejecting, "key-rejected")

    def test_a_failure_on_the_far_side_raises_a_transient_error(self, failing: Endpoint):
        with pytest.raises(TransientError):
            _call(failing, "key-failing")

    def test_a_successful_call_returns_a_response_message_with_the_same_id(self, succeeding: Endpoint):
        response = _call(succeeding, "key-ok")
        assert isinstance(response, Message)
        assert response.message_id == succeeding.message.message_id

    def test_the_idempotency_key_given_reaches_the_far_side(self, succeeding: Endpoint):
        _call(succeeding, "expense-42:post-voucher")
        assert succeeding.idempotency_keys() == ["expense-42:post-voucher"]

    def test_the_adapter_can_be_called_from_many_threads_at_once(self, succeeding: Endpoint):
        keys = [f"key-{i}" for i in range(32)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(lambda key: _call(succeeding, key), keys))
        assert len(responses) == len(keys)
        assert sorted(succeeding.idempotency_keys()) == sorted(keys)


def _call(endpoint: Endpoint, key: str) -> Message:
    return endpoint.adapter.call(endpoint.operation, endpoint.message, idempotency_key=key)


# -- REST --------------------------------------------------------------------------------------
class TestRestAdapterContract(AdapterContract):
    @pytest.fixture
    def timing_out(self, http_stub: StubHttpServer) -> Iterator[Endpoint]:
        http_stub.route("/vouchers", lambda request: StubResponse(201, {"ok": True}, delay=TIMEOUT * 5))
        yield from _rest_endpoint(http_stub, timeout="300ms")

    @pytest.fixture
    def rejecting(self, http_stub: StubHttpServer) -> Iterator[Endpoint]:
        http_stub.enqueue("/vouchers", 422, {"error": "account 6602 does not exist"})
        yield from _rest_endpoint(http_stub)

    @pytest.fixture
    def failing(self, http_stub: StubHttpServer) -> Iterator[Endpoint]:
        http_stub.enqueue("/vouchers", 502, "bad gateway")
        yield from _rest_endpoint(http_stub)

    @pytest.fixture
    def succeeding(self, http_stub: StubHttpServer) -> Iterator[Endpoint]:
        http_stub.route("/vouchers", lambda request: StubResponse(201, {"voucher_no": "V-1"}))
        yield from _rest_endpoint(http_stub)


def _rest_endpoint(server: StubHttpServer, **settings) -> Iterator[Endpoint]:
    spec = AdapterSpec("ledger-rest", "rest", "adapters/ledger-rest.yaml",
                       {"base_url": server.url, "timeout": "2s", **settings},
                       {"create_voucher": {"method": "POST", "path": "/vouchers"}})
    adapter = open_adapter(spec, Path("."))

    def keys() -> list[str]:
        return [r.headers["Idempotency-Key"] for r in server.requests]

    try:
        yield Endpoint(adapter, "create_voucher", Message({"claim_id": "EXP-42", "amount": Decimal("12.50")}), keys)
    finally:
        adapter.close()
