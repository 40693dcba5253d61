"""max_body: a project-wide limit in config/esb.yaml, a route's own, and the reason a body is refused."""

from __future__ import annotations

import textwrap

import pytest

from esb.errors import ConfigErrors
from esb.loading.config import load_settings
from esb.loading.project import load_project
from esb.loading.sizes import size_bytes
from esb.routes.model import body_too_large
from esb.routes.testing import run_route_tests

ROUTE = """\
name: statements
source: {exchange: bank.events, binding_key: statement}
steps:
  - set_headers: {kind: "'statement'"}
"""


def write(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.mark.parametrize("written, size", [("512KB", 524_288), ("10MB", 10_485_760), ("1GB", 1_073_741_824),
                                           ("2 MB", 2_097_152), ("1000", 1000), (1000, 1000), ("7B", 7)])
def test_sizes_are_read_as_operations_staff_write_them(written, size):
    assert size_bytes(written) == size


def test_a_size_that_is_not_one_says_how_to_write_it():
    with pytest.raises(ValueError, match="'1.5MB' is not a size like 512KB, 10MB or 1GB"):
        size_bytes("1.5MB")


def test_the_project_default_is_ten_megabytes(tmp_path):
    assert load_settings(tmp_path, {}).max_body_bytes == 10_485_760


def test_the_project_limit_comes_from_config_and_its_environment_override(tmp_path):
    write(tmp_path, {"config/esb.yaml": "limits: {max_body: 2MB}\n"})
    assert load_settings(tmp_path, {}).max_body_bytes == 2_097_152
    assert load_settings(tmp_path, {"ESB_LIMITS_MAX_BODY": "512KB"}).max_body_bytes == 524_288


def test_a_wrong_project_limit_is_reported_at_its_line(tmp_path):
    write(tmp_path, {"config/esb.yaml": "limits:\n  max_body: 2 megs\n"})
    with pytest.raises(ConfigErrors) as caught:
        load_settings(tmp_path, {})
    assert str(caught.value).startswith("config/esb.yaml:2:13: 'max_body': '2 megs' does not match")
    assert str(caught.value).endswith("Write a size like 512KB, 10MB or 1GB, or whole bytes")


def test_a_route_may_set_its_own_limit_and_otherwise_takes_the_project_one(tmp_path):
    write(tmp_path, {"routes/statements.yaml": ROUTE + "max_body: 2MB\n",
                     "routes/other.yaml": ROUTE.replace("name: statements", "name: other")})
    project = load_project(tmp_path, {})
    assert project.routes["statements"].max_body_bytes == 2_097_152
    assert project.routes["other"].max_body_bytes is None
    assert project.routes["other"].body_limit(project.settings.max_body_bytes) == 10_485_760
    assert project.routes["statements"].body_limit(project.settings.max_body_bytes) == 2_097_152


def test_a_wrong_route_limit_is_reported_at_its_line(tmp_path):
    write(tmp_path, {"routes/statements.yaml": ROUTE + "max_body: -5\n"})
    with pytest.raises(ConfigErrors) as caught:
        load_project(tmp_path, {})
    assert [str(e) for e in caught.value.errors][0].startswith("routes/statements.yaml:5:11: 'max_body'")


def test_a_body_over_the_limit_gets_one_sentence_with_both_sizes():
    assert body_too_large(10_485_760, 10_485_760) is None
    assert body_too_large(52_428_800, 10_485_760) == ("the body is 52,428,800 bytes, over the route's limit of "
                                                      "10,485,760 (max_body)")


def test_route_tests_refuse_a_body_over_the_routes_limit_before_any_step(tmp_path):
    write(tmp_path, {"routes/statements.yaml": ROUTE + "max_body: 40\n", "routes/tests/statements.yaml": """\
        route: statements
        cases:
          - name: a small statement passes
            input: {body: {id: "S-1"}}
            expect: {headers: {kind: statement}}
          - name: a large statement is refused unread
            input: {body: {id: "S-2", lines: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}
            expect: {error: {class: permanent, message_contains: "over the route's limit of 40 (max_body)"}}
          - name: an unexpected refusal says so
            input: {body: {id: "S-3", lines: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}
            expect: {headers: {kind: statement}}
        """})
    results = run_route_tests(load_project(tmp_path, {}))
    assert [(r.passed, r.reasons) for r in results][:2] == [(True, []), (True, [])]
    assert not results[2].passed
    assert results[2].reasons == ["the route failed with a permanent error before the first step: the body is "
                                  "55 bytes, over the route's limit of 40 (max_body)"]
