"""The one rule for what is secret, used by `routes show`, the adapters' error messages and the loader.

A setting, header or variable is secret when its name says so (token, password, X-Auth,
Ocp-Apim-Subscription-Key, ...). Its value is shown as `***`; a value that came from a secret
`${VAR}`, or that an adapter uses as a credential, is also masked wherever it appears in text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Over-masking a harmless header costs a `***` in a listing; under-masking leaks a credential.
SECRET_NAME = re.compile(r"auth|token|secret|passw|passphrase|api[-_]?key|private[-_]?key|subscription[-_]?key|"
                         r"signature|cookie|session|credential", re.I)
# A masked value shorter than this is replaced only where it is a whole value, never inside
# other text: masking every "t" or "42" would garble what is shown and hide nothing.
MIN_EMBEDDED = 4


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def mask_secrets(value: Any, key: str = "") -> Any:
    """`value` with every value under a secret-looking key replaced by ***."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v, key) for v in value]
    return MASK if is_secret_name(key) and value not in (None, "") else value


def credentials(settings: Any, key: str = "") -> set[str]:
    """The text values an adapter's settings hold under secret-looking keys."""
    if isinstance(settings, dict):
        return set().union(*(credentials(v, str(k)) for k, v in settings.items()))
    if isinstance(settings, (list, tuple)):
        return set().union(*(credentials(v, key) for v in settings))
    return {settings} if isinstance(settings, str) and settings and is_secret_name(key) else set()


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (text, or lists and mappings of it) with each secret value replaced by ***."""
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)
    return _redact(value, ordered) if ordered else value


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, secrets) for v in value]
    if not isinstance(value, str):
        return value
    if value in secrets:
        return MASK
    for secret in secrets:
        if len(secret) >= MIN_EMBEDDED:
            value = value.replace(secret, MASK)
    return value
