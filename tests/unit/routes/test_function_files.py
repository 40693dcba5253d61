"""Function steps run code only from transformers/functions/, and only when a route or route test runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from esb.cli.main import esb
from esb.errors import ConfigErrors
from esb.loading.project import load_project

ROUTE = """\
name: fn
source: {exchange: oa.events, binding_key: k}
steps:
  - function: "FUNCTION"
"""

TESTS = """\
route: fn
cases:
  - name: the function runs
    input: {body: {a: 1}}
    expect: {body: {a: 1}}
"""


def marker_code(marker: Path) -> str:
    """A function file whose top level leaves a file behind when it is run."""
    return f"open({str(marker)!r}, 'w').close()\n\ndef run(body, headers):\n    return body\n"


def project(root: Path, function: str, files: dict[str, str]) -> Path:
    files = {"routes/fn.yaml": ROUTE.replace("FUNCTION", function), **files}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def problems(root: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_project(root, {})
    return [str(e) for e in caught.value.errors]


def outside_message(file: str) -> str:
    return (f"routes/fn.yaml:4:15: the function file '{file}' is not in transformers/functions/ — put the file "
            "in transformers/functions/ and name it from the project root, e.g. transformers/functions/statement.py")


def test_a_function_file_reached_with_dot_dot_is_refused_and_not_run(tmp_path):
    root, marker = tmp_path / "project", tmp_path / "ran"
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.py").write_text(marker_code(marker))
    project(root, "../outside/x.py:run", {})
    assert problems(root) == [outside_message("../outside/x.py")]
    assert not marker.exists()


def test_an_absolute_function_path_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "x.py").write_text(marker_code(marker))
    root = project(tmp_path / "project", f"{tmp_path / 'x.py'}:run", {})
    assert problems(root) == [outside_message(str(tmp_path / "x.py"))]
    assert not marker.exists()


def test_a_symlink_out_of_the_functions_folder_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "x.py").write_text(marker_code(marker))
    root = project(tmp_path / "project", "transformers/functions/link.py:run", {"transformers/functions/ok.py": ""})
    (root / "transformers" / "functions" / "link.py").symlink_to(tmp_path / "x.py")
    assert outside_message("transformers/functions/link.py") in problems(root)
    assert not marker.exists()


def test_a_python_file_elsewhere_in_the_project_is_refused(tmp_path):
    root = project(tmp_path, "routes/x.py:run", {"routes/x.py": "def run(body, headers):\n    return body\n"})
    assert problems(root) == [outside_message("routes/x.py")]


def test_validating_creates_no_file(tmp_path):
    marker = tmp_path / "ran"
    root = project(tmp_path / "project", "transformers/functions/x.py:run",
                   {"transformers/functions/x.py": marker_code(marker)})
    result = CliRunner().invoke(esb, ["--root", str(root), "routes", "validate"])
    assert (result.exit_code, result.stdout) == (0, "OK: 1 routes, 0 adapters\n")
    assert not marker.exists()


def test_validate_finds_a_missing_function_by_parsing_without_running_the_file(tmp_path):
    marker = tmp_path / "ran"
    root = project(tmp_path / "project", "transformers/functions/x.py:runn",
                   {"transformers/functions/x.py": marker_code(marker)})
    assert problems(root) == ["routes/fn.yaml:4:15: the function 'runn' in transformers/functions/x.py does not "
                              "exist — Did you mean 'run'?"]
    assert not marker.exists()


def test_the_function_runs_when_the_route_tests_run(tmp_path):
    marker = tmp_path / "ran"
    root = project(tmp_path / "project", "transformers/functions/x.py:run",
                   {"transformers/functions/x.py": marker_code(marker), "routes/tests/fn.yaml": TESTS})
    result = CliRunner().invoke(esb, ["--root", str(root), "routes", "test"])
    assert result.exit_code == 0, result.stdout
    assert marker.exists()


def test_a_function_file_swapped_for_a_link_after_validation_is_not_run(tmp_path):
    from esb.message import Message
    from esb.steps.pipeline import StepFailed, run_steps
    marker = tmp_path / "ran"
    (tmp_path / "x.py").write_text(marker_code(marker))
    root = project(tmp_path / "project", "transformers/functions/f.py:run",
                   {"transformers/functions/f.py": "def run(body, headers):\n    return body\n"})
    steps = load_project(root, {}).routes["fn"].steps
    (root / "transformers" / "functions" / "f.py").unlink()
    (root / "transformers" / "functions" / "f.py").symlink_to(tmp_path / "x.py")
    with pytest.raises(StepFailed) as caught:
        run_steps(steps, Message({"a": 1}), None)
    assert "is now a link" in caught.value.error.message
    assert not marker.exists()


ARGS_ROUTE = """\
name: fn
source: {exchange: oa.events, binding_key: k}
steps:
  - function: {file: transformers/functions/x.py, name: run, args: ARGS}
"""
ARGS_CODE = ("def run(body, headers, *, timezone, fee_account='6603'):\n"
             "    return {**body, 'tz': timezone, 'fee': fee_account}\n")


def args_project(root: Path, args: str) -> Path:
    return project(root, "unused", {"routes/fn.yaml": ARGS_ROUTE.replace("ARGS", args),
                                    "transformers/functions/x.py": ARGS_CODE})


def test_args_reach_the_function_as_keyword_arguments(tmp_path):
    from esb.message import Message
    from esb.steps.pipeline import run_steps
    root = args_project(tmp_path, "{timezone: Europe/Zurich}")
    steps = load_project(root, {}).routes["fn"].steps
    assert run_steps(steps, Message({"a": 1}), None).body == {"a": 1, "tz": "Europe/Zurich", "fee": "6603"}


def test_an_arg_the_function_does_not_take_is_refused_by_validation(tmp_path):
    root = args_project(tmp_path, "{timezone: UTC, timezon: UTC}")
    assert problems(root) == ["routes/fn.yaml:4:68: the function 'run' in transformers/functions/x.py takes no "
                              "argument 'timezon' — Did you mean 'timezone'?"]


def test_an_arg_the_function_needs_is_asked_for_by_validation(tmp_path):
    root = args_project(tmp_path, "{fee_account: '6601'}")
    assert problems(root) == ["routes/fn.yaml:4:68: the function 'run' in transformers/functions/x.py needs the "
                              "argument 'timezone' — give it in the step: args: {timezone: ...}"]
