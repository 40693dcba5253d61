"""Watching esb run: Prometheus metrics and health (middleware on the runtime's seam, and the
endpoint that serves them). Nothing here is part of the message core."""

from __future__ import annotations

import os

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OFF = "off"


def metrics_wanted(listen: str) -> bool:
    """Whether this worker counts: it serves metrics itself, or a supervisor serves them for it."""
    return listen != OFF or bool(os.environ.get(MULTIPROC_ENV))
