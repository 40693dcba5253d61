"""routes/samples/: one message per shipped route, for `esb send`, each the input of a route test that passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from esb.loading.envfile import read_env_file
from esb.loading.project import load_project
from esb.routes.testing import run_route_tests

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "routes" / "samples"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    key = tmp_path_factory.mktemp("keys") / "client_key"  # the demo's key file need not exist (`make demo-key`)
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    return load_project(ROOT, {**read_env_file(ROOT / "config" / "demo.env"), "BANK_SFTP_KEY_FILE": str(key)})


def sample_cases() -> dict[str, list[str]]:
    """Route name -> the names of its route-test cases whose input is its sample file."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "routes" / "tests").glob("*.yaml")):
        tests = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in tests["cases"]:
            file = case["input"].get("file", "")
            if file.startswith("routes/samples/"):
                assert Path(file).stem == tests["route"], f"{path.name}: {file} is not {tests['route']}'s sample"
                found.setdefault(tests["route"], []).append(case["name"])
    return found


def test_every_shipped_route_has_exactly_one_sample_message(project):
    samples = sorted(p.stem for p in SAMPLES.iterdir() if p.name != "README.md")
    assert samples == sorted(project.routes)
    assert len({p.stem for p in SAMPLES.iterdir()}) == len(list(SAMPLES.iterdir()))


def test_every_sample_is_the_input_of_a_route_test_case_that_passes(project):
    cases = sample_cases()
    assert sorted(cases) == sorted(project.routes)
    for route, names in cases.items():
        results = [r for r in run_route_tests(project, route) if r.case in names]
        assert len(results) == len(names) and all(r.passed for r in results), [r.reasons for r in results]


def test_the_samples_readme_names_every_sample():
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for path in SAMPLES.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme
