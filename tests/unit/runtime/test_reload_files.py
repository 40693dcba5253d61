"""What hot reload watches, and which routes a change affects."""

from __future__ import annotations

from esb.runtime.reload import changed_files, snapshot


def test_the_snapshot_covers_route_adapter_transformer_and_config_files_but_no_scratch(tmp_path):
    for name in ("routes/r.yaml", "routes/tests/r.yaml", "adapters/a.yaml", "adapters/wsdl/a.wsdl",
                 "transformers/functions/f.py", "transformers/functions/__pycache__/f.cpython-311.pyc",
                 "transformers/mappings/.m.yaml.swp", "transformers/mappings/m.yaml~", "config/esb.yaml",
                 "var/state.key"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert sorted(snapshot(tmp_path)) == ["adapters/a.yaml", "adapters/wsdl/a.wsdl", "config/esb.yaml",
                                          "routes/r.yaml", "transformers/functions/f.py"]


def test_a_change_is_a_file_added_removed_or_rewritten():
    old = {"routes/a.yaml": "1", "routes/b.yaml": "2", "config/esb.yaml": "3"}
    new = {"routes/a.yaml": "1", "routes/b.yaml": "9", "routes/c.yaml": "4"}
    assert changed_files(old, new) == {"routes/b.yaml", "routes/c.yaml", "config/esb.yaml"}


ROUTE = "name: {name}\nsource: {{exchange: x, binding_key: {name}}}\nsteps:\n{steps}"
LEDGER = "name: ledger\nkind: rest\nbase_url: http://127.0.0.1:9\noperations:\n  post: {method: POST, path: /p}\n"


def project(root, files):
    from esb.loading.project import load_project
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return load_project(root, {})


def test_only_the_routes_a_change_reaches_are_swapped(tmp_path):
    from esb.runtime.reload import affected_routes
    files = {
        "routes/a.yaml": ROUTE.format(name="a", steps="  - map: transformers/mappings/m.yaml\n"),
        "routes/b.yaml": ROUTE.format(name="b", steps="  - to: {adapter: ledger, operation: post}\n"),
        "routes/c.yaml": ROUTE.format(name="c", steps="  - log: {message: seen}\n"),
        "transformers/mappings/m.yaml": "output:\n  n: n\n", "adapters/ledger.yaml": LEDGER}
    before = project(tmp_path, files)
    after = project(tmp_path, {"transformers/mappings/m.yaml": "output:\n  n: n\n  v: \"'2'\"\n"})
    assert affected_routes(before, after, {"transformers/mappings/m.yaml"}) == {"a"}
    assert affected_routes(before, after, {"adapters/ledger.yaml"}) == {"b"}
    assert affected_routes(before, after, {"config/esb.yaml"}) == {"a", "b", "c"}
    (tmp_path / "routes" / "c.yaml").unlink()
    without_c = project(tmp_path, {"routes/d.yaml": ROUTE.format(name="d", steps="  - log: {message: new}\n")})
    assert affected_routes(after, without_c, {"routes/c.yaml", "routes/d.yaml"}) == {"c", "d"}
