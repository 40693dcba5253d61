"""Sizes as operations staff write them: 512KB, 10MB, 1GB, or whole bytes (binary units: 1KB = 1,024)."""

from __future__ import annotations

import re

_UNIT = {"": 1, "B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
_SIZE = re.compile(r"^(\d+)\s*(B|KB|MB|GB)?$")
# One schema, not anyOf: a wrong size then gets "does not match" and this description as its hint.
SIZE = {"type": ["string", "integer"], "pattern": r"^\d+\s*(B|KB|MB|GB)?$", "minimum": 1,
        "description": "write a size like 512KB, 10MB or 1GB, or whole bytes (1KB = 1,024 bytes)"}


def size_bytes(value: str | int) -> int:
    """`10MB` -> 10,485,760; a bare number is bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value).strip())
    if not match:
        raise ValueError(f"'{value}' is not a size like 512KB, 10MB or 1GB")
    return int(match.group(1)) * _UNIT[match.group(2) or ""]
