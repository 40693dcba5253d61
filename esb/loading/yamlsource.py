"""Read asset YAML into plain data, remembering where every key and value stood.

PyYAML reads YAML 1.1, where an unquoted `NO` is false, `017` is 15 and `2024-01-02` is a
date. In finance files those are country codes, account numbers and references, so such
plain scalars are refused with a hint to quote them; floats become Decimal; tags other than
the standard ones (e.g. `!!python/object`) are refused.
"""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from esb.errors import ConfigError, ConfigErrors

MAX_FILE_BYTES = 2_000_000
MAX_NODES = 200_000  # aliases can make a small file expand without bound
MAX_DEPTH = 100  # routes nest a few levels; PyYAML composes recursively and would overflow the stack

_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_STD + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}
_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)$")
_PLAIN_FLOAT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$")
_SYNTAX_SENTENCES = {
    "mapping values are not allowed here":
        ("a ':' stands where YAML does not expect a key",
         "quote the value if it contains ': ', or fix the indentation"),
    "could not find expected ':'":
        ("a key is missing its ':'", "write `key: value`, or quote the whole text"),
    "found character '\\t' that cannot start any token":
        ("a tab is used for indentation", "indent with spaces only"),
    "found undefined alias":
        ("an alias (*name) refers to an anchor that is not defined", "define the &anchor first"),
    "expected <block end>, but found '<block mapping start>'":
        ("this line is indented differently from the lines of its block",
         "align it with the keys above it that belong to the same mapping"),
    "expected <block end>, but found '-'":
        ("a list item is indented differently from its siblings", "align the '-' of every item"),
}

Path_ = tuple  # a path into the data: keys and list indexes


@dataclasses.dataclass(frozen=True)
class Located:
    """Data read from one file, with the line and column of each key and value (1-based)."""

    path: str
    data: Any
    values: dict
    keys: dict

    def where(self, at: Path_, *, key: bool = False) -> tuple[int | None, int | None]:
        """The position of `at`, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        at = tuple(at)
        while at:
            if at in table:
                return table[at]
            if at in self.values:
                return self.values[at]
            at = at[:-1]
        return self.values.get((), (1, 1))

    def error(self, at: Path_, message: str, hint: str | None = None, *, key: bool = False) -> ConfigError:
        line, col = self.where(at, key=key)
        return ConfigError(message, path=self.path, line=line, col=col, hint=hint)


def load_yaml(path: str | Path, display: str | None = None) -> Located:
    """Load one YAML file; raise ConfigErrors naming every problem found."""
    shown = display or str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigErrors([ConfigError(f"cannot read the file: {exc.strerror}", path=shown)]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigErrors([ConfigError(f"the file is larger than {MAX_FILE_BYTES} bytes", path=shown,
                                        hint="split it into several files")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigErrors([ConfigError(f"the file is not UTF-8 (byte {exc.start})", path=shown,
                                        hint="save it as UTF-8")]) from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, path: str) -> Located:
    """Parse YAML text; raise ConfigErrors naming every problem found."""
    try:
        _check_depth(text, path)  # composing and walking recurse: refuse deep nesting before either
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigErrors([_syntax_error(exc, path, text)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for syntax
        raise ConfigErrors([ConfigError(f"the YAML cannot be read: {exc}", path=path)]) from None
    walker = _Walker(path)
    data = walker.walk(root, ()) if root is not None else None
    if walker.errors:
        raise ConfigErrors(walker.errors)
    return Located(path, data, walker.values, walker.keys)


def _check_depth(text: str, path: str) -> None:
    """Refuse collections nested deeper than MAX_DEPTH, found with PyYAML's event parser (a loop)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise ConfigErrors([ConfigError(f"the YAML is nested more than {MAX_DEPTH} levels deep", path=path,
                                                line=mark.line + 1, col=mark.column + 1,
                                                hint="flatten it: asset files are a few levels deep")])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _syntax_error(exc: yaml.MarkedYAMLError, path: str, text: str = "") -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    problem = (exc.problem or "").strip()
    message, hint = _SYNTAX_SENTENCES.get(
        problem, (f"the YAML cannot be read ({problem})", "check the indentation and quoting on this line"))
    line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
    lines = text.splitlines()
    if line is None or not 0 < line <= len(lines):
        return ConfigError(message, path=path, line=line, col=col, hint=hint)
    dedented = _dedented_line(lines, line)
    if dedented is not None:  # the parser trips on the line after the one that is out of step
        return ConfigError(f"this line is indented less than the lines around it: `{lines[dedented - 1].strip()}`",
                           path=path, line=dedented, col=_indent(lines[dedented - 1]) + 1,
                           hint=f"indent it like line {dedented - 1} (YAML cannot read line {line} after it)")
    return ConfigError(f"{message}: `{lines[line - 1].strip()}`", path=path, line=line, col=col, hint=hint)


def _dedented_line(lines: list[str], line: int) -> int | None:
    """The line before `line` when it stands less indented than both its neighbours, opening no block."""
    above = [n for n in range(line - 1, 0, -1) if _content(lines[n - 1])][:2]
    if len(above) < 2 or not _content(lines[line - 1]):
        return None
    suspect, before = above
    text = lines[suspect - 1].split(" #")[0].rstrip()
    if text.endswith(":") or text.lstrip().startswith("- "):
        return None
    low = _indent(lines[suspect - 1])
    return suspect if low < _indent(lines[line - 1]) and low < _indent(lines[before - 1]) else None


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


class _Walker:
    """Turns a composed node tree into plain data, noting positions and refusing traps."""

    def __init__(self, path: str):
        self.path = path
        self.errors: list[ConfigError] = []
        self.values: dict = {}
        self.keys: dict = {}
        self.count = 0
        self.constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, message: str, hint: str | None = None) -> None:
        self.errors.append(ConfigError(message, path=self.path, line=node.start_mark.line + 1,
                                       col=node.start_mark.column + 1, hint=hint))

    def walk(self, node: yaml.Node, at: tuple) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.fail(node, f"the file expands to more than {MAX_NODES} values",
                          "do not nest aliases (*name) inside repeated anchors")
            return None
        self.values[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag not in _ALLOWED_TAGS:
            tag = node.tag.replace(_STD, "!!")
            self.fail(node, f"the tag {tag} is not allowed", "asset files hold plain data only: remove the tag")
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, at)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, at + (i,)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def mapping(self, node: yaml.MappingNode, at: tuple) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _STD + "null":
                self.fail(key_node, "a key must be plain text", "write `name: value`")
                continue
            key = key_node.value
            if key == "<<":
                self.fail(key_node, "merge keys (<<) are not supported", "write the keys out in full")
                continue
            if key in result:
                self.fail(key_node, f"the key '{key}' appears twice in this mapping", "keep only one of them")
                continue
            self.keys[at + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.walk(value_node, at + (key,))
        return result

    def scalar(self, node: yaml.ScalarNode) -> Any:
        text, tag = node.value, node.tag
        if node.style is not None or tag == _STD + "str":
            return text
        if tag == _STD + "null":
            return None
        trap = _trap(text, tag)
        if trap:
            self.fail(node, f"the unquoted value {text} reads as {trap} in YAML",
                      f"quote it if text is meant: '{text}'")
            return text
        if tag == _STD + "float":
            return _decimal(text)
        return self.constructor.construct_object(node, deep=True)


def _trap(text: str, tag: str) -> str | None:
    """Say what YAML 1.1 turns this plain scalar into, when a person likely meant text."""
    if tag == _STD + "bool" and text.lower() not in ("true", "false"):
        return f"boolean {text.lower() in ('yes', 'y', 'on')}".lower()
    if tag == _STD + "int" and not _PLAIN_INT.match(text):
        return f"the number {yaml.safe_load(text)}"
    if tag == _STD + "float" and not _PLAIN_FLOAT.match(text):
        return "a float that is not a plain decimal"
    if tag == _STD + "timestamp":
        return "a date"
    return None


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - guarded by _PLAIN_FLOAT
        return Decimal("NaN")
