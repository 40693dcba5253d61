"""Durations as operations staff write them: 500ms, 10s, 5m, 1h, or whole seconds."""

from __future__ import annotations

import re

_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


def seconds(value: str | int | float) -> float:
    """`10s` -> 10.0; a bare number is seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"'{value}' is not a duration like 500ms, 10s, 5m or 1h")
    return float(match.group(1)) * _UNIT[match.group(2)]
