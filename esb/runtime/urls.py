"""The one place a URL's password is masked, for what is printed and logged."""

from __future__ import annotations

import urllib.parse

MASK = "***"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, fit to print and log."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:{MASK}@{host}{slash}{path}"


def without_password(text: str, url: str) -> str:
    """`text` (e.g. a driver's error) with the password of `url` masked wherever it appears."""
    password = urllib.parse.urlsplit(url).password
    if not password:
        return text
    return text.replace(password, MASK).replace(urllib.parse.unquote(password), MASK)
