"""The parts keep their rules: who may import whom, read from the source with ast (imports inside
functions count too)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import esb

ESB = Path(esb.__file__).parent


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in the file; `from esb import runtime` yields esb.runtime."""
    package = ".".join(path.relative_to(ESB.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def offenders(under: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    """`file:line imports module` for each import of a `forbidden` package by a file under `under`
    (a folder or file of esb/), except files under `allowed` and a package importing itself."""
    found = []
    for path in sorted((ESB / under).rglob("*.py") if (ESB / under).is_dir() else [ESB / under]):
        name = path.relative_to(ESB).as_posix()
        if any(name == a or name.startswith(a + "/") for a in allowed):
            continue
        for line, module in imports(path):
            for package in forbidden:
                own = name.startswith(package.removeprefix("esb.").replace(".", "/") + "/")
                if (module == package or module.startswith(package + ".")) and not own:
                    found.append(f"esb/{name}:{line} imports {module}")
    return sorted(set(found))


def test_no_step_imports_the_runtime():
    assert offenders("steps", ("esb.runtime",)) == []


def test_no_adapter_imports_the_runtime():
    assert offenders("adapters", ("esb.runtime",)) == []


def test_transform_never_imports_the_runtime():
    assert offenders("transform", ("esb.runtime",)) == []


def test_only_the_demo_imports_the_stand_in_servers_and_the_demo():
    assert offenders(".", ("esb.testing", "esb.demo"), allowed=("cli/demo.py", "demo")) == []


def test_the_rules_see_an_import_hidden_in_a_function_and_a_relative_one(tmp_path, monkeypatch):
    fake = tmp_path / "esb"
    (fake / "steps").mkdir(parents=True)
    (fake / "steps" / "sneaky.py").write_text("def f():\n    from esb.runtime import names\n")
    (fake / "steps" / "relative.py").write_text("from ..runtime.broker import Outgoing\n")
    monkeypatch.setitem(globals(), "ESB", fake)
    assert offenders("steps", ("esb.runtime",)) == [
        "esb/steps/relative.py:1 imports esb.runtime.broker",
        "esb/steps/relative.py:1 imports esb.runtime.broker.Outgoing",
        "esb/steps/sneaky.py:2 imports esb.runtime",
        "esb/steps/sneaky.py:2 imports esb.runtime.names",
    ]


def test_no_two_test_files_share_a_name():
    """The test folders are not packages: pytest cannot collect two test modules of one name."""
    from collections import Counter
    tests = Path(__file__).resolve().parents[1]
    names = Counter(path.name for path in tests.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
