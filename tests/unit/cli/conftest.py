"""Every `esb` command configures structlog (level, stderr): a CLI test leaves it as it found it,
or a later test's `capture_logs` would miss its info lines."""

from __future__ import annotations

import pytest
import structlog


@pytest.fixture(autouse=True)
def _structlog_as_it_was():
    config = structlog.get_config()
    yield
    structlog.configure(**config)
