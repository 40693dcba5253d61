"""Load adapters/*.yaml into AdapterSpec models, with secrets kept out of anything shown."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esb.adapters.kinds import ADAPTER_KINDS, FILE_FIELDS
from esb.errors import ConfigError
from esb.loading.durations import seconds
from esb.loading.interpolate import hidden_variables, interpolate, unrepeated
from esb.loading.registry import did_you_mean
from esb.loading.schemacheck import check
from esb.loading.secrets import MASK, credentials, is_secret_name, mask_secrets, redact  # noqa: F401 - adapters import MASK
from esb.loading.yamlsource import Located


@dataclasses.dataclass(frozen=True)
class AdapterSpec:
    """One configured endpoint: its kind, settings and named operations."""

    name: str
    kind: str
    path: str
    settings: Mapping[str, Any]
    operations: Mapping[str, Mapping[str, Any]]
    inbound: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # values never shown: its credentials and whatever came from a secret-looking ${VAR}
    secrets: frozenset[str] = frozenset()

    def shown(self) -> dict:
        """Settings as `esb routes show` prints them: every secret masked."""
        return redact(mask_secrets(dict(self.settings)), self.secrets)


def positive_seconds(spec: AdapterSpec, key: str, value: Any, default: float) -> float:
    """A duration setting of an adapter (`10s`, `500ms`, whole seconds) that must be above zero."""
    try:
        result = default if value is None else seconds(value)
    except ValueError as exc:
        raise ConfigError(f"the adapter '{spec.name}': {key}: {exc}", path=spec.path) from None
    if result <= 0:
        raise ConfigError(f"the adapter '{spec.name}': {key} must be more than 0", path=spec.path)
    return result


def load_adapter(located: Located, root: Path, env: Mapping[str, str]) -> tuple[AdapterSpec | None, list[ConfigError]]:
    """Build one adapter from its file; return it (or None) and the problems found."""
    data = located.data
    if not isinstance(data, dict):
        return None, [located.error((), "an adapter file must be a mapping with `name:` and `kind:`")]
    kind = data.get("kind")
    if kind not in ADAPTER_KINDS:
        return None, [located.error(("kind",), f"unknown adapter kind '{kind}'",
                                    did_you_mean(str(kind), sorted(ADAPTER_KINDS)))]
    filled, _, errors = interpolate(located, env)
    errors += unrepeated(errors, check(located, ADAPTER_KINDS[kind], filled))
    for field in FILE_FIELDS.get(kind, ()):
        if isinstance(filled.get(field), str) and not (root / filled[field]).is_file():
            errors.append(located.error((field,), f"the file '{filled[field]}' does not exist",
                                        "check the path (relative to the project root)"))
    if errors:
        return None, errors
    settings = {k: v for k, v in filled.items() if k not in ("name", "kind", "operations", "inbound")}
    secrets = credentials(filled) | {env[name] for _, name in hidden_variables(located, env, _by_name) if name in env}
    return AdapterSpec(filled["name"], kind, located.path, settings, filled["operations"],
                       filled.get("inbound", {}), frozenset(secrets)), []


def _by_name(name: str, value: str) -> bool:
    return is_secret_name(name)
