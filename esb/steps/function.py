"""`function`: transform the body with a Python function from transformers/functions/*.py, loaded by path."""

from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import importlib.util
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
_ARGS = {"type": "object", "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
         "description": "keyword arguments the function is called with after (body, headers): settings of "
                        "the route such as a time zone or a fee account",
         "examples": [{"timezone": "Europe/Zurich", "fee_account": "6603"}]}
# Loaded modules by (path, mtime, size): a route reload after the file changed loads it afresh,
# while every route and message using an unchanged file shares one module.
_MODULES: dict[tuple[str, int, int], ModuleType] = {}
FUNCTIONS_FOLDER = "transformers/functions"
_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class FunctionStep(Step):
    kind = "function"
    blocking = True  # unknown code: it may read a file or call out
    schema = {
        "description": "Call `name(body, headers)` from a Python file (loaded by its path, never imported "
                       "as a package); what it returns becomes the body, with the same content type, or JSON "
                       "when it returns an object or a list (a parser of text, e.g. MT940). `args` are passed as "
                       "keyword arguments: `name(body, headers, **args)`. JSON numbers "
                       "arrive as Decimal and must leave as Decimal or int, never float. Raise "
                       "esb.errors.BusinessError to dead-letter a message that breaks a business rule.",
        "type": ["string", "object"],  # FILE.py:FUNCTION, or {file, name}
        "pattern": r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
        "additionalProperties": False,
        "required": ["file", "name"],
        "properties": {"file": _FILE, "name": _NAME, "args": _ARGS},
        "examples": ["transformers/functions/statement.py:reconcile",
                     {"file": "transformers/functions/statement.py", "name": "reconcile"},
                     {"file": "transformers/functions/statement.py", "name": "entries",
                      "args": {"timezone": "Europe/Zurich"}}],
    }

    label: str
    file: str
    name: str
    args: tuple[tuple[str, Any], ...] = ()
    _function: _Loader | None = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, config: Any, label: str, ctx: BuildContext, at: tuple) -> FunctionStep:
        args: dict = {}
        if isinstance(config, str):
            file, _, name = config.rpartition(":")
            file_at, name_at = at, at
        else:
            file, name, args = config["file"], config["name"], config.get("args") or {}
            file_at, name_at = at + ("file",), at + ("name",)
        path = _function_file(file, ctx, file_at)
        tree = _parse(path, file, ctx, file_at) if path is not None else None
        if tree is not None:
            _check_defined(tree, file, name, sorted(args), ctx, name_at, at + ("args",))
        return cls(label, file, name, tuple(args.items()), _Loader(path))

    def run(self, message: Message, io: StepIO) -> Message:
        function = self._function.get(self.file, self.name)
        # A copy, so a function that edits the body in place cannot change the state retries hold.
        kwargs = {key: copy.deepcopy(value) for key, value in self.args}
        result = function(copy.deepcopy(message.body), message.headers, **kwargs)
        return message.with_body(result, _content_type(result, message, f"{self.file}:{self.name}"))


class _Loader:
    """Loads the function's module on first use, when a route or a route test runs: validating
    a project (what a CI job does on someone's pull request) parses the file and never runs it."""

    def __init__(self, path: Path | None):
        self._path = path
        self._function: Callable | None = None
        self._lock = threading.Lock()

    def get(self, file: str, name: str) -> Callable:
        function = self._function  # loaded: no lock on every message
        if function is None:
            with self._lock:
                if self._function is None:
                    self._function = _loaded(self._path, file, name)
                function = self._function
        return function


def _loaded(path: Path, file: str, name: str) -> Callable:
    if path.resolve() != path:  # replaced by a symlink since the route was validated
        raise TransformError(f"{file} is now a link; function files must be plain files in {FUNCTIONS_FOLDER}/")
    try:
        module = load_module(path)
    except Exception as exc:  # noqa: BLE001 - whatever the file runs at import fails the step, not the worker
        raise TransformError(f"{file} fails while loading: {type(exc).__name__}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise TransformError(f"{file} defines no function '{name}' once loaded")
    return function


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


def _function_file(file: str, ctx: BuildContext, at: tuple) -> Path | None:
    """The file, only from transformers/functions/ (resolved: no `..`, absolute path or symlink out)."""
    folder = (ctx.root / FUNCTIONS_FOLDER).resolve()
    path = (ctx.root / file).resolve()
    if Path(file).is_absolute() or not path.is_relative_to(folder):
        ctx.error(at, f"the function file '{file}' is not in {FUNCTIONS_FOLDER}/",
                  f"put the file in {FUNCTIONS_FOLDER}/ and name it from the project root, "
                  f"e.g. {FUNCTIONS_FOLDER}/statement.py")
        return None
    return ctx.asset(file, at)


def _parse(path: Path, file: str, ctx: BuildContext, at: tuple) -> ast.Module | None:
    """The file's syntax tree; its code is not run."""
    try:
        return ast.parse(path.read_bytes(), filename=file)
    except SyntaxError as exc:
        ctx.error(at, f"{file} line {exc.lineno}: the Python code does not compile: {exc.msg}",
                  "fix the syntax on that line")
    except (OSError, ValueError) as exc:
        ctx.error(at, f"{file} cannot be read: {exc}", "save it as plain UTF-8 text")
    return None


def _check_defined(tree: ast.Module, file: str, name: str, args: list[str], ctx: BuildContext,
                   at: tuple, args_at: tuple) -> None:
    """`name` is a top-level `def` taking (body, headers) and the route's args, or at least bound at the top level."""
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if name in functions:
        if not _takes_two(functions[name].args):
            ctx.error(at, f"the function '{name}' in {file} must take two arguments: (body, headers)",
                      f"write `def {name}(body, headers):`")
        else:
            _check_keywords(functions[name].args, file, name, args, ctx, args_at)
        return
    if name in _other_names(tree):
        if name in _constants(tree):
            ctx.error(at, f"the function '{name}' in {file} is not a function", "define it with `def`")
        return  # bound another way (an import, a decorator's result): checked when it first runs
    choices = sorted(n for n in functions if not n.startswith("_"))
    ctx.error(at, f"the function '{name}' in {file} does not exist",
              did_you_mean(name, choices) or "define it in the file")


def _takes_two(args: ast.arguments) -> bool:
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    return required <= 2 and (len(positional) >= 2 or args.vararg is not None)


def _check_keywords(params: ast.arguments, file: str, name: str, args: list[str], ctx: BuildContext,
                    at: tuple) -> None:
    """Every arg the route gives is a parameter of the function, and every parameter it needs is given."""
    if params.kwarg is None:
        known = {a.arg for a in [*params.args[2:], *params.kwonlyargs]}
        unknown = [a for a in args if a not in known]
        if unknown:
            ctx.error(at, f"the function '{name}' in {file} takes no argument {', '.join(map(repr, unknown))}",
                      did_you_mean(unknown[0], sorted(known)) or "remove it from args, or add the parameter")
    missing = [a.arg for a, default in zip(params.kwonlyargs, params.kw_defaults, strict=True)
               if default is None and a.arg not in args]
    missing += [a.arg for a in params.args[2:len(params.args) - len(params.defaults)] if a.arg not in args]
    if missing:
        ctx.error(at, f"the function '{name}' in {file} needs the argument {', '.join(map(repr, missing))}",
                  f"give it in the step: args: {{{missing[0]}: ...}}")


def _other_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.ClassDef)):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
            if isinstance(node, ast.ClassDef):
                names.add(node.name)
    return names


def _constants(tree: ast.Module) -> set[str]:
    """Names bound to a literal (RATE = 3): certainly not functions."""
    return {t.id for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets if isinstance(t, ast.Name)}


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
