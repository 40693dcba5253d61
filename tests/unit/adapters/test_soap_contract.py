"""The adapter contract, run against the SOAP adapter and the spyne stand-in of the OA voucher archive."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from test_adapter_contract import TIMEOUT, AdapterContract, Endpoint

from esb.adapters.base import open_adapter
from esb.adapters.spec import AdapterSpec
from esb.message import Message
from esb.testing.soap import VoucherArchiveServer

# spyne 2.14 warns on import under Python 3.11 (see test_soap_adapter.py); nothing else is filtered.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:_SixMetaPathImporter\.(find_spec|exec_module)\(\) not found:ImportWarning"),
    pytest.mark.filterwarnings(r"ignore:'cgi' is deprecated:DeprecationWarning:spyne\."),
]

USER, PASSWORD = "esb", "contract-pw-41"


@pytest.fixture
def archive() -> Iterator[VoucherArchiveServer]:
    server = VoucherArchiveServer(users={USER: PASSWORD}).start()
    yield server
    server.stop()


class TestSoapAdapterContract(AdapterContract):
    @pytest.fixture
    def timing_out(self, archive: VoucherArchiveServer, project_root: Path) -> Iterator[Endpoint]:
        archive.delay = TIMEOUT * 5
        yield from _soap_endpoint(archive, project_root, timeout=f"{int(TIMEOUT * 1000)}ms")

    @pytest.fixture
    def rejecting(self, archive: VoucherArchiveServer, project_root: Path) -> Iterator[Endpoint]:
        archive.fail_next("Client.InvalidVoucher", "the voucher V-1 has no lines")
        yield from _soap_endpoint(archive, project_root)

    @pytest.fixture
    def failing(self, archive: VoucherArchiveServer, project_root: Path) -> Iterator[Endpoint]:
        archive.fail_next("Server", "the archive database is down")
        yield from _soap_endpoint(archive, project_root)

    @pytest.fixture
    def succeeding(self, archive: VoucherArchiveServer, project_root: Path) -> Iterator[Endpoint]:
        yield from _soap_endpoint(archive, project_root)


def _soap_endpoint(server: VoucherArchiveServer, root: Path, **settings) -> Iterator[Endpoint]:
    spec = AdapterSpec("oa-soap", "soap", "adapters/oa-soap.yaml",
                       {"wsdl": "adapters/wsdl/voucher-archive.wsdl", "address": server.url, "timeout": "2s",
                        "wsse": {"username": USER, "password": PASSWORD}, **settings},
                       {"ArchiveVoucher": {"operation": "ArchiveVoucher"}})
    adapter = open_adapter(spec, root)

    def keys() -> list[str]:
        return [r.headers["Idempotency-Key"] for r in server.requests]

    voucher = {"voucher_no": "V-1", "amount": Decimal("12.50"), "currency": "CNY", "claim_id": "EXP-42"}
    try:
        yield Endpoint(adapter, "ArchiveVoucher", Message(voucher), keys)
    finally:
        adapter.close()
