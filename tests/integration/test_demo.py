"""`make demo`: every scenario of the demo comes out as it says."""

from esb.demo import run_demo


def test_every_demo_scenario_comes_out_as_expected(project_root, testdata):
    lines = []
    outcomes = run_demo(project_root, lines.append)
    assert [o.scenario.name for o in outcomes if not o.ok] == [], "\n".join(lines)
    assert {o.result for o in outcomes} >= {"done", "dead", "skipped", "review"}
