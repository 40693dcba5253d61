"""esb/testing and esb/demo are for tests, benchmarks and `esb demo`: the engine never imports them."""

import ast
from pathlib import Path

import esb

ESB = Path(esb.__file__).parent
ALLOWED = {"testing", "demo", "cli/demo.py"}  # the stand-ins themselves, the demo and the command that runs it


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_no_engine_module_imports_the_stand_ins_or_the_demo():
    offenders = {}
    for path in sorted(ESB.rglob("*.py")):
        where = path.relative_to(ESB).as_posix()
        if where.split("/")[0] in ALLOWED or where in ALLOWED:
            continue
        bad = sorted(name for name in _imports(path) if name.split(".")[:2] in (["esb", "testing"], ["esb", "demo"]))
        if bad:
            offenders[where] = bad
    assert offenders == {}


def test_the_check_sees_an_import_of_the_stand_ins():
    assert "esb.testing.ledger.StandInLedger" in _imports(ESB / "demo" / "run.py")
