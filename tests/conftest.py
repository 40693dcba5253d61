"""Shared fixtures: project paths and the public test data in ../shared/testdata."""

from pathlib import Path

import pytest

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
