"""Shell completion of route names, read from routes/ without loading (or validating) the project."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from esb.cli.completion import complete_route, route_names
from esb.cli.main import esb


@pytest.fixture
def project(tmp_path: Path) -> Path:
    routes = tmp_path / "routes"
    (routes / "tests").mkdir(parents=True)
    (routes / "camt053.yaml").write_text("# bank statements\nname: camt053-to-ledger\nsource: {queue: q}\n")
    (routes / "expense.yml").write_text('description: x\nname: "oa-expense-to-voucher"  # OA\nsteps: [{valdate: {}}]\n')
    (routes / "half-written.yaml").write_text("source: {queue: q}\n")  # no name yet: its file name
    (routes / "tests" / "camt053.yaml").write_text("route: camt053-to-ledger\ncases: []\n")
    return tmp_path


def test_route_names_come_from_each_route_file_s_name_line_without_loading_the_project(project):
    assert route_names(project) == ["camt053-to-ledger", "half-written", "oa-expense-to-voucher"]
    assert route_names(project / "nowhere") == []


def test_the_completion_function_offers_the_names_that_start_with_what_was_typed(project):
    ctx = click.Context(esb, info_name="esb")
    ctx.params["root"] = project
    assert [item.value for item in complete_route(ctx, None, "ca")] == ["camt053-to-ledger"]
    assert len(complete_route(ctx, None, "")) == 3


def bash_complete(project: Path, words: str) -> list[str]:
    line = f"esb --root {project} {words}"
    result = CliRunner().invoke(esb, [], prog_name="esb", env={
        "_ESB_COMPLETE": "bash_complete", "COMP_WORDS": line, "COMP_CWORD": str(len(line.split()) - 1)})
    return result.stdout.splitlines()


@pytest.mark.parametrize("words", ["routes show oa", "routes graph oa", "routes test oa", "send oa",
                                   "declare --route oa", "run --route oa", "dlq list oa", "dlq replay oa",
                                   "dlq purge oa"])
def test_bash_completes_route_names_for_each_route_argument(project, words):
    assert bash_complete(project, words) == ["plain,oa-expense-to-voucher"]


def test_send_completes_a_file_after_the_route_and_after_exchange(project):
    assert bash_complete(project, "send oa-expense-to-voucher ro") == ["file,ro"]
    assert bash_complete(project, "send --exchange x --key k ro") == ["file,ro"]


def test_bash_source_prints_the_script_the_readme_tells_to_eval():
    result = CliRunner().invoke(esb, [], prog_name="esb", env={"_ESB_COMPLETE": "bash_source"})
    assert "_esb_completion()" in result.stdout and "complete " in result.stdout
