"""Who holds a lease: a worker's owner id, and whether that owner is a process that is gone."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

_HOST = socket.gethostname()


def owner_id() -> str:
    """A worker's name in the store: host, pid (to spot a dead owner) and a random token."""
    return f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def _owner_alive(owner: str) -> bool:
    """False only when the owner is a process of this host that is gone; elsewhere the lease decides."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed worker its parent has not reaped yet still answers kill(pid, 0)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def takes_over(holder: str | None, lease_until: float, owner: str, now: float) -> bool:
    """May `owner` claim an in-progress record held by `holder`?"""
    return not holder or holder == owner or lease_until <= now or not _owner_alive(holder)
