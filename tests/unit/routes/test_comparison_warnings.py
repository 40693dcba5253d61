"""`esb routes validate` warns, without failing, where a comparison orders a value against numeric text."""

from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from esb.cli.main import esb
from esb.loading.project import load_project

ROUTE = """\
name: camt-large
source: {exchange: bank.events, binding_key: statement.camt053}
steps:
  - label: large-only
    filter: "Ntry[?Amt > '10000']"
  - label: review
    choice:
      - when: "to_number(Amt) > `10000`"
        steps:
          - label: very-large
            filter: "Amt >= '50000.00'"
  - label: to-entries
    map: transformers/mappings/entries.yaml
"""

MAPPING = """\
output:
  id: Id
  large: "Amt > '100'"
"""


def _project(root: Path) -> Path:
    for name, text in {"routes/camt-large.yaml": ROUTE, "transformers/mappings/entries.yaml": MAPPING}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_validate_warns_at_each_step_that_compares_a_path_with_numeric_text_and_still_passes(tmp_path):
    result = CliRunner().invoke(esb, ["--root", str(_project(tmp_path)), "routes", "validate"],
                                env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0
    hint = "compare numbers: to_number(field) > `{0}`, or decimal(field) > `{0}` to make a field that is " \
           "not a number an error"
    text = "; text orders as text (XML amounts are text), so '99.00' > '100' would hold — "
    assert result.stdout.splitlines() == [
        "routes/camt-large.yaml:4:5: warning: step 'large-only' of route 'camt-large' orders a value against the "
        "text '10000' in `Ntry[?Amt > '10000']`" + text + hint.format("10000"),
        "routes/camt-large.yaml:10:13: warning: step 'very-large' of route 'camt-large' orders a value against the "
        "text '50000.00' in `Amt >= '50000.00'`" + text + hint.format("50000.00"),
        "routes/camt-large.yaml:12:5: warning: field large of the mapping transformers/mappings/entries.yaml, "
        "used by step 'to-entries' of route 'camt-large' orders a value against the text '100' in `Amt > '100'`"
        + text + hint.format("100"),
        "OK: 1 routes, 0 adapters"]


def test_the_project_loads_with_the_warnings_beside_it(tmp_path):
    project = load_project(_project(tmp_path), {})
    assert list(project.routes) == ["camt-large"]
    assert [w.line for w in project.warnings] == [4, 10, 12]


def test_numbers_compared_as_numbers_give_no_warning(tmp_path):
    _project(tmp_path)
    route = ROUTE.replace("Amt > '10000'", "to_number(Amt) > `10000`")
    (tmp_path / "routes/camt-large.yaml").write_text(route.replace("Amt >= '50000.00'", "decimal(Amt) >= `50000`"))
    (tmp_path / "transformers/mappings/entries.yaml").write_text(MAPPING.replace("'100'", "`100`"))
    assert load_project(tmp_path, {}).warnings == ()
