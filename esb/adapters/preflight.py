"""Check an adapter as `esb run` will open it, without connecting: what validates is what runs.

Opening an adapter reads its files (private key, known_hosts, CA bundle, WSDL), parses its
URLs, templates and headers; an sftp adapter's inbound pollers check their paths. Each refusal
is a ConfigError naming only the file; here it gets the line of the setting it is about, so
`esb routes validate` reports it as `path:line:col: what — how to fix`, and `esb run` stops
before any worker starts instead of crash-looping.
"""

from __future__ import annotations

import re
from pathlib import Path

from esb.adapters.spec import AdapterSpec
from esb.errors import ConfigError
from esb.loading.yamlsource import Located

_NOT_SETTINGS = ("name", "kind", "description")
_FILE_HINT = "check the path (relative to the project root) and that esb may read the file"
_HINTS = {"private_key": "point it at an unencrypted Ed25519, ECDSA or RSA key file readable by esb",
          "known_hosts": _FILE_HINT, "ca_file": _FILE_HINT, "wsdl": _FILE_HINT}


def preflight(spec: AdapterSpec, located: Located, root: Path) -> list[ConfigError]:
    """Every problem opening `spec` would raise (none: the adapter opens and is closed again)."""
    from esb.adapters.base import open_adapter
    problems = []
    try:
        open_adapter(spec, root).close()
    except ConfigError as exc:
        problems.append(_placed(exc, located))
    except Exception as exc:  # noqa: BLE001 - `esb run` would die of it: validate must say so, not crash
        # only the exception's type: its text may quote a setting, and settings hold secrets
        problems.append(located.error(("kind",), f"the adapter '{spec.name}' cannot be opened "
                                                 f"({type(exc).__name__})", "check its settings and files"))
    for name in spec.inbound:
        problems += [_placed(e, located, ("inbound", name)) for e in _inbound_problems(spec, name)]
    return problems


def _inbound_problems(spec: AdapterSpec, name: str) -> list[ConfigError]:
    from esb.adapters.sftp_poller import _archive, _poll
    from esb.adapters.spec import positive_seconds
    config = spec.inbound[name]
    try:
        directory, _ = _poll(spec, name, str(config["poll"]))
        _archive(spec, name, config, directory)
        positive_seconds(spec, "every", config.get("every"), 1.0)
    except ConfigError as exc:
        return [exc]
    return []


def _placed(error: ConfigError, located: Located, within: tuple = ()) -> ConfigError:
    """The error at the line of the setting its message names (an operation, a header, a key)."""
    at = within or _setting(error.message, located.data)
    line, col = located.where(at, key=True)
    return ConfigError(error.message, path=located.path, line=line, col=col, hint=error.hint or _HINTS.get(at[0]))


def _setting(message: str, data: dict) -> tuple:
    for section in ("operations", "inbound", "headers"):
        for name in data.get(section) or {}:
            if f"'{name}'" in message:
                return (section, name)
    for key in data:
        if key not in _NOT_SETTINGS and re.search(rf"\b{re.escape(key)}\b", message, re.I):
            return (key,)
    if "auth" in data and "auth" in message:
        return ("auth",)
    return ("kind",)
