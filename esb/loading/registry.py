"""Registries of kinds: names mapped to "module:Class" strings, resolved on first use."""

from __future__ import annotations

import difflib
import importlib
from typing import Any


class Registry:
    """A table of named kinds (step kinds, adapter kinds), imported lazily."""

    def __init__(self, what: str, entries: dict[str, str]):
        self.what = what
        self._entries = dict(entries)
        self._loaded: dict[str, Any] = {}

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Any:
        if name not in self._entries:
            raise KeyError(self.unknown(name))
        if name not in self._loaded:
            module, _, attr = self._entries[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), attr)
        return self._loaded[name]

    def unknown(self, name: str) -> str:
        """`No such step kind: valdate. Did you mean validate?`"""
        return f"no such {self.what}: {name}. {did_you_mean(name, self.names())}"


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=1)
    if close:
        return f"Did you mean '{close[0]}'?"
    return "Valid names: " + ", ".join(choices) if choices else ""
