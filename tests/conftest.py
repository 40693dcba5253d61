"""Shared fixtures: project paths and the public test data in ../shared/testdata."""

import os
from pathlib import Path

import pytest
import structlog

# Every `esb run` a test starts serves its metrics on a free port: the default 9464 would clash.
os.environ.setdefault("ESB_METRICS_LISTEN", "127.0.0.1:0")

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"the shared test data is missing: expected {TESTDATA} "
                    "(clone the project beside shared/, as CI does)", pytrace=False)
    return TESTDATA


# ---- HTTP stub server (owner: adapters) ------------------------------------------------------
# One implementation, esb.testing.http.StubHttpServer, shared with the bus tests and `esb demo`.
from esb.testing.http import StubHttpServer  # noqa: E402


@pytest.fixture
def http_stub():
    """A scriptable HTTP server on 127.0.0.1 (a free port): `enqueue`, `route`, `requests`, `url`."""
    server = StubHttpServer().start()
    yield server
    server.stop()
# ---- end HTTP stub server --------------------------------------------------------------------



@pytest.fixture(autouse=True)
def _structlog_as_it_was():
    """Every `esb` command configures structlog (level, stderr): a test that runs one in-process
    (CliRunner) leaves it as it found it, or a later test's `capture_logs` would miss info lines."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)
