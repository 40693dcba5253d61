"""Broker URLs: a list of nodes in one setting, and the one place a URL's password is masked."""

from __future__ import annotations

import re
import urllib.parse

MASK = "***"
# A list is URLs joined by commas: "amqp://u:p@rabbit1:5672/%2F,amqp://u:p@rabbit2:5672/%2F". A comma
# starts a new URL only where a scheme follows, so a password may hold a comma of its own.
_NEXT_URL = re.compile(r"\s*,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def split_urls(url: str) -> list[str]:
    """The URLs of a comma-separated list (one URL is a list of one), stripped, empty ones dropped."""
    return [part for part in (p.strip() for p in _NEXT_URL.split(url.strip())) if part]


def mask_url(url: str) -> str:
    """The URL (or each URL of a list) with its password replaced by ***, fit to print and log."""
    return ",".join(_mask_one(part) for part in split_urls(url)) if "," in url else _mask_one(url)


def _mask_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:{MASK}@{host}{slash}{path}"


def without_password(text: str, url: str) -> str:
    """`text` (e.g. a driver's error) with the password of `url` (of each URL of a list) masked."""
    for one in split_urls(url):
        password = urllib.parse.urlsplit(one).password
        if password:
            text = text.replace(password, MASK).replace(urllib.parse.unquote(password), MASK)
    return text
