"""Check the idempotency store's settings as `esb run` will open it, without creating or connecting."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from esb.errors import ConfigError
from esb.loading.config import CONFIG_FILE, Settings
from esb.loading.yamlsource import load_yaml, parse_yaml

REDIS_SCHEMES = ("redis", "rediss", "unix")


def store_problems(root: Path, settings: Settings) -> list[ConfigError]:
    """What would stop the store opening: an SQLite path esb cannot create, a Redis URL it cannot parse."""
    if settings.store_kind == "sqlite":
        problem = _sqlite_problem(root / settings.store_path)
        key, hint = "path", "give a file in a folder esb may write to (ESB_STORE_PATH)"
    else:
        problem = _redis_problem(settings.store_url)
        key, hint = "url", "write redis://HOST:6379/0 (ESB_STORE_URL)"
    if problem is None:
        return []
    return [_located(root).error(("store", key), f"the idempotency store {problem}", hint)]


def _sqlite_problem(path: Path) -> str | None:
    if path.is_dir():
        return f"path {path} is a folder"
    folder = path.parent
    while not folder.exists():  # SqliteStore creates the missing folders: the nearest existing one must allow it
        folder = folder.parent
    if not folder.is_dir():
        return f"path {path} lies under {folder}, which is not a folder"
    writable = path if path.exists() else folder
    if not os.access(writable, os.W_OK):
        return f"path {path} cannot be written ({writable} is read-only for this user)"
    return None


def _redis_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        return f"url cannot be read: {exc}"
    if parts.scheme not in REDIS_SCHEMES:
        return f"url must start with redis://, rediss:// or unix://, not {parts.scheme or 'nothing'}"
    return None


def _located(root: Path):
    path = root / CONFIG_FILE
    return load_yaml(path, CONFIG_FILE) if path.is_file() else parse_yaml("{}", CONFIG_FILE)
