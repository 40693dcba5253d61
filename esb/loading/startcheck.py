"""Check the settings `esb run` opens before it starts (the store, the broker URL), without creating
or connecting: a project that validates must not die of them once its workers are forked."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from esb.errors import ConfigError
from esb.loading.config import CONFIG_FILE, Settings
from esb.loading.yamlsource import load_yaml, parse_yaml

REDIS_SCHEMES = ("redis", "rediss", "unix")
POSTGRES_SCHEMES = ("postgresql", "postgres")


def start_problems(root: Path, settings: Settings) -> list[ConfigError]:
    """What would stop `esb run` opening its store or its broker."""
    # unset is no problem of the project: the commands that need a broker say so (esb.cli.brokers)
    problem = broker_url_problem(settings.broker_url) if settings.broker_url else None
    found = [] if problem is None else [_located(root).error(
        ("broker", "url"), f"the broker url {problem}",
        "write amqp://USER:PASSWORD@HOST:5672/VHOST, several joined by commas for a cluster, or memory:// "
        "(ESB_BROKER_URL)")]
    return found + store_problems(root, settings)


def broker_url_problem(url: str) -> str | None:
    """Why `esb run` could not open a broker at `url`, a URL or a list of RabbitMQ nodes' URLs joined
    by commas (None: it can try). A list names the URL at fault by its place and masked text."""
    from esb.runtime.urls import mask_url, split_urls
    urls = split_urls(url)
    if len(urls) < 2:
        return _url_problem(url, _broker_schemes())
    for place, one in enumerate(urls, 1):
        problem = _url_problem(one, ("amqp", "amqps"))
        if problem is not None:
            return f"number {place} of {len(urls)}, {mask_url(one)}, {problem} (a list of nodes is RabbitMQ's)"
    return None


def _broker_schemes() -> tuple[str, ...]:
    """RabbitMQ (amqp, amqps), the embedded broker (memory) and the other transports kombu knows."""
    from kombu.transport import TRANSPORT_ALIASES
    return ("amqp", "amqps", "memory", *sorted(set(TRANSPORT_ALIASES) - {"amqp", "amqps", "memory"}))


def store_problems(root: Path, settings: Settings) -> list[ConfigError]:
    """What would stop the store opening: an SQLite path esb cannot create, a Redis or
    PostgreSQL URL it cannot parse."""
    if settings.store_kind == "sqlite":
        problem = _sqlite_problem(root / settings.store_path)
        key, hint = "path", "give a file in a folder esb may write to (ESB_STORE_PATH)"
    elif settings.store_kind == "postgres":
        problem = _store_url_problem(settings.store_url, POSTGRES_SCHEMES)
        key, hint = "url", "write postgresql://USER@HOST:5432/DATABASE (ESB_STORE_URL)"
    else:
        problem = _store_url_problem(settings.store_url, REDIS_SCHEMES)
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


def _store_url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    problem = _url_problem(url, schemes)
    return None if problem is None else f"url {problem}"


def _url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """Why `url` cannot be used (without its text: a URL may carry a password), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return "cannot be read (check the host and the port)"
    if parts.scheme not in schemes or "://" not in url:
        wanted = ", ".join(f"{s}://" for s in schemes[:3])
        return f"must start with {wanted}, not {parts.scheme or 'nothing'}"
    return None


def _located(root: Path):
    path = root / CONFIG_FILE
    return load_yaml(path, CONFIG_FILE) if path.is_file() else parse_yaml("{}", CONFIG_FILE)
