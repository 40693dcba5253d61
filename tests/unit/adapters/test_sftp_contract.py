"""The adapter contract, run against the SFTP adapter and a real sshd on loopback."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from test_adapter_contract import TIMEOUT, AdapterContract, Endpoint

from esb.adapters.base import open_adapter
from esb.adapters.spec import AdapterSpec
from esb.message import Message
from esb.testing.sftp import SftpServer, SshdMissing
from esb.transform import jsoncodec


@pytest.fixture(scope="module")
def sftp_server() -> Iterator[SftpServer]:
    try:
        server = SftpServer().start()
    except SshdMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


class TestSftpAdapterContract(AdapterContract):
    """SFTP has no request headers: the remote file name is what makes a repeated call recognisable.

    So the contract's idempotency-key test does not apply; a repeat is checked below instead, and
    the many-threads test checks files rather than keys.
    """

    test_the_idempotency_key_given_reaches_the_far_side = None

    @pytest.fixture
    def timing_out(self, sftp_server: SftpServer) -> Iterator[Endpoint]:
        with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            yield from _endpoint(sftp_server, port=silent.getsockname()[1], timeout=f"{int(TIMEOUT * 1000)}ms")

    @pytest.fixture
    def rejecting(self, sftp_server: SftpServer) -> Iterator[Endpoint]:
        stranger = sftp_server.make_key(f"stranger-{uuid.uuid4().hex[:8]}")  # not in authorized_keys
        yield from _endpoint(sftp_server, private_key=str(stranger))

    @pytest.fixture
    def failing(self, sftp_server: SftpServer) -> Iterator[Endpoint]:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        yield from _endpoint(sftp_server, port=port)  # nothing listens there: connection refused

    @pytest.fixture
    def succeeding(self, sftp_server: SftpServer) -> Iterator[Endpoint]:
        yield from _endpoint(sftp_server)

    def test_a_repeated_call_writes_the_same_remote_file_again(self, succeeding: Endpoint, sftp_server: SftpServer):
        first = succeeding.adapter.call("upload", succeeding.message, idempotency_key="k")
        second = succeeding.adapter.call("upload", succeeding.message, idempotency_key="k")
        assert first.body == second.body
        folder = sftp_server.root / Path(first.body["path"]).parent.relative_to("/")
        assert [p.name for p in folder.iterdir()] == [Path(first.body["path"]).name]

    def test_the_adapter_can_be_called_from_many_threads_at_once(self, succeeding: Endpoint, sftp_server: SftpServer):
        messages = [Message({"claim_id": f"EXP-{i}", "amount": Decimal(f"{i}.50")}) for i in range(32)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(lambda m: succeeding.adapter.call("upload", m, idempotency_key=m.message_id),
                                      messages))
        for message, response in zip(messages, responses, strict=True):
            local = sftp_server.root / response.body["path"].lstrip("/")
            assert local.read_bytes() == jsoncodec.dumps(message.body).encode()


def _endpoint(server: SftpServer, **settings) -> Iterator[Endpoint]:
    box = f"contract-{uuid.uuid4().hex[:8]}"
    (server.root / box).mkdir()
    spec = AdapterSpec("bank-sftp", "sftp", "adapters/bank-sftp.yaml",
                       {**server.adapter_settings(), "timeout": "5s", **settings},
                       {"upload": {"put": server.remote(f"{box}/{{message_id}}-{{claim_id}}.json")}})
    adapter = open_adapter(spec, Path("."))
    try:
        yield Endpoint(adapter, "upload", Message({"claim_id": "EXP-42", "amount": Decimal("12.50")}), list)
    finally:
        adapter.close()
