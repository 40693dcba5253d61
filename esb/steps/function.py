"""`function`: transform the body with a Python function from transformers/functions/*.py, loaded by path."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from esb.errors import TransformError
from esb.loading.registry import did_you_mean
from esb.message import JSON, Message
from esb.steps.base import BuildContext, Step, StepIO

_FILE = {"type": "string", "pattern": r"\.py$", "description": "a Python file relative to the project root",
         "examples": ["transformers/functions/statement.py"]}
_NAME = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "description": "the function's name"}
# Loaded modules by (path, mtime, size): a route reload after the file changed loads it afresh,
# while every route and message using an unchanged file shares one module.
_MODULES: dict[tuple[str, int, int], ModuleType] = {}
_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class FunctionStep(Step):
    kind = "function"
    blocking = True  # unknown code: it may read a file or call out
    schema = {
        "description": "Call `name(body, headers)` from a Python file (loaded by its path, never imported "
                       "as a package); what it returns becomes the body, with the same content type, or JSON "
                       "when it returns an object or a list (a parser of text, e.g. MT940). JSON numbers "
                       "arrive as Decimal and must leave as Decimal or int, never float. Raise "
                       "esb.errors.BusinessError to dead-letter a message that breaks a business rule.",
        "type": ["string", "object"],  # FILE.py:FUNCTION, or {file, name}
        "pattern": r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
        "additionalProperties": False,
        "required": ["file", "name"],
        "properties": {"file": _FILE, "name": _NAME},
        "examples": ["transformers/functions/statement.py:reconcile",
                     {"file": "transformers/functions/statement.py", "name": "reconcile"}],
    }

    label: str
    file: str
    name: str
    _function: Callable[[Any, Any], Any] | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, config: Any, label: str, ctx: BuildContext, at: tuple) -> FunctionStep:
        if isinstance(config, str):
            file, _, name = config.rpartition(":")
            file_at, name_at = at, at
        else:
            file, name = config["file"], config["name"]
            file_at, name_at = at + ("file",), at + ("name",)
        path = ctx.asset(file, file_at)
        module = _load(path, file, ctx, file_at) if path is not None else None
        function = _find(module, file, name, ctx, name_at) if module is not None else None
        return cls(label, file, name, function)

    def run(self, message: Message, io: StepIO) -> Message:
        # A copy, so a function that edits the body in place cannot change the state retries hold.
        result = self._function(copy.deepcopy(message.body), message.headers)
        return message.with_body(result, _content_type(result, message, f"{self.file}:{self.name}"))


def load_module(path: Path) -> ModuleType:
    """Load a Python file by path under a private module name; once per version of the file."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _LOCK:
        if key not in _MODULES:
            for stale in [k for k in _MODULES if k[0] == key[0]]:
                del _MODULES[stale]
            _MODULES[key] = _exec(path)
        return _MODULES[key]


def _exec(path: Path) -> ModuleType:
    # Named after the file and a hash of its path: two functions/ files called util.py stay
    # apart, and neither can shadow a real package (transformers/ is not importable on purpose).
    name = f"esb_functions_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up by name while it runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load(path: Path, file: str, ctx: BuildContext, at: tuple) -> ModuleType | None:
    try:
        return load_module(path)
    except SyntaxError as exc:
        ctx.error(at, f"{file} line {exc.lineno}: the Python code does not compile: {exc.msg}",
                  "fix the syntax on that line")
    except Exception as exc:  # noqa: BLE001 - whatever the file runs at import must become a config error
        ctx.error(at, f"{file} fails while loading: {type(exc).__name__}: {exc}",
                  "fix the code at the top level of the file")
    return None


def _find(module: ModuleType, file: str, name: str, ctx: BuildContext, at: tuple) -> Callable | None:
    function = getattr(module, name, None)
    if not callable(function):
        choices = sorted(n for n, v in vars(module).items()
                         if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        what = "is not a function" if function is not None else "does not exist"
        ctx.error(at, f"the function '{name}' in {file} {what}", did_you_mean(name, choices) or "define it in the file")
        return None
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        ctx.error(at, f"the function '{name}' in {file} must take two arguments: (body, headers)",
                  f"write `def {name}(body, headers):`")
        return None
    except ValueError:  # some builtins have no signature to inspect
        pass
    return function


def _content_type(result: Any, message: Message, where: str) -> str:
    """The result's content type: JSON stays JSON; text or bytes stay what they were, or become JSON
    when the function returns an object or a list (it parsed them)."""
    if message.is_json or isinstance(result, (dict, list)):
        found = _float_at(result, "$")
        if found:
            raise TransformError(f"{where} returned a float at {found}; money must be Decimal (or int)")
        return JSON
    wanted = str if isinstance(message.body, str) else bytes
    if not isinstance(result, wanted):
        raise TransformError(f"{where} returned {type(result).__name__}, but a {message.content_type} "
                             f"body must be {wanted.__name__}, or a JSON object or list")
    return message.content_type


def _float_at(value: Any, path: str) -> str | None:
    """The path of the first float in a returned body, walking iteratively (bodies can be deep)."""
    stack = [(path, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, float):
            return path
        if isinstance(node, dict):
            stack.extend((f"{path}.{k}", v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))
    return None
