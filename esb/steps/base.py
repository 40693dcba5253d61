"""The contract every step kind follows, and what a step is given to build and to run."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

from esb.errors import ConfigError
from esb.loading.yamlsource import Located
from esb.message import Message


class StepIO(Protocol):
    """What a step may do to the outside world. The runtime and route tests each supply one."""

    def call(self, step: Step, adapter: str, operation: str, message: Message) -> Message:
        """Call an adapter operation; return its response as a message."""

    def publish(self, step: Step, exchange: str, routing_key: str, message: Message) -> None:
        """Publish a message; it counts as sent only once the broker confirms it."""

    def completed(self, step: Step, message: Message) -> None:
        """A side-effecting step finished with `message` (what its compensation will be given)."""


@dataclasses.dataclass
class BuildContext:
    """What a step kind needs while it is built from its config: files, adapters, error sink."""

    root: Path
    located: Located
    adapters: Mapping[str, Any]
    errors: list[ConfigError]
    build_steps: Callable[[Any, tuple, str], tuple[Step, ...]]
    labels: set[str] = dataclasses.field(default_factory=set)
    warnings: list[ConfigError] = dataclasses.field(default_factory=list)  # the route runs, but see these

    def error(self, at: tuple, message: str, hint: str | None = None, *, key: bool = False) -> None:
        self.errors.append(self.located.error(at, message, hint, key=key))

    def asset(self, relative: str, at: tuple) -> Path | None:
        """Resolve a file named in a route (relative to the project root); note it if missing."""
        path = (self.root / relative).resolve()
        if path.is_file():
            return path
        folder = path.parent
        near = difflib.get_close_matches(path.name, [p.name for p in folder.glob("*")], n=1) \
            if folder.is_dir() else []
        hint = (f"did you mean '{Path(relative).parent / near[0]}'?" if near
                else "check the path (relative to the project root)")
        self.error(at, f"the file '{relative}' does not exist", hint)
        return None


class Step:
    """A step kind: a frozen dataclass with a `label`, built once, run for every message.

    `run` returns the next message, or None when the message stops here (a filter).
    Subclasses set `kind`, `schema` (a JSON Schema fragment with description and examples,
    used both to validate and by `esb routes explain`), `side_effect` for steps whose outcome
    the idempotency store must record (`to`, `publish`), and `blocking` for steps that may wait
    on the outside world (`to`, `function`): those never run on the broker's thread.
    """

    kind: ClassVar[str]
    schema: ClassVar[dict]
    side_effect: ClassVar[bool] = False
    blocking: ClassVar[bool] = False  # may wait on the outside world (an endpoint, unknown code)
    label: str

    @classmethod
    def build(cls, config: Any, label: str, ctx: BuildContext, at: tuple) -> Step:
        raise NotImplementedError

    def run(self, message: Message, io: StepIO) -> Message | None:
        raise NotImplementedError

    def settings(self) -> dict:
        """The resolved settings, for `esb routes show` (never secrets)."""
        return {f.name: _shown(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.name != "label" and not f.name.startswith("_")}

    def branches(self) -> list[tuple[str, tuple[Step, ...]]]:
        """Nested step lists with their conditions (a choice has some)."""
        return []

    def has_side_effects(self) -> bool:
        return self.side_effect or any(s.has_side_effects() for _, steps in self.branches() for s in steps)


def _shown(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple) and value and isinstance(value[0], Step):
        return f"{len(value)} steps"
    return value if isinstance(value, (str, int, float, bool, type(None), dict, list, tuple)) else str(value)
