"""`make demo`: every scenario of the demo comes out as tests/integration/demo_expectations.py says,
and the demo brings everything it sends: it reads nothing from ../shared."""

from __future__ import annotations

import os
import sys

import pytest
from demo_expectations import EXPECTED, mismatches

from esb.demo import run_demo, scenarios


@pytest.fixture(scope="module")
def demo_run(project_root):
    """One run of the demo on the embedded broker: its outcomes, its log, and the files it opened."""
    opened: list[str] = []
    recording = [True]

    def audit(event: str, args: tuple) -> None:  # an audit hook cannot be removed: it stops recording
        if recording[0] and event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            opened.append(os.fsdecode(args[0]))
    sys.addaudithook(audit)
    lines: list[str] = []
    try:
        outcomes = run_demo(project_root, lines.append)
    finally:
        recording[0] = False
    return {o.scenario.name: o for o in outcomes}, "\n".join(lines), opened


def test_every_scenario_of_the_demo_has_its_expectation_written_in_a_test():
    assert [s.name for s in scenarios()] == list(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_demo_scenario_comes_out_as_expected(demo_run, name):
    outcomes, log, _ = demo_run
    outcome = outcomes[name]
    assert mismatches(outcome, EXPECTED[name]) == [], f"{outcome.result}: {outcome.detail}\n\n{log}"
    assert outcome.ok, f"the demo itself judged it {outcome.result}, expecting {outcome.scenario.expect}"


def test_the_demo_reads_nothing_from_the_shared_test_data(demo_run, project_root):
    _, _, opened = demo_run
    shared = str(project_root.parent / "shared")
    assert opened, "the audit hook saw no file opened at all"
    assert [path for path in opened if path.startswith(shared)] == []
