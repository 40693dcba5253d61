"""The count `make cluster-test` fails on (tests/cluster/run.py tally): what is lost, unexpected,
posted twice, or never came out."""

import importlib.util
import json
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "cluster" / "run.py"
spec = importlib.util.spec_from_file_location("cluster_run", RUN)
cluster_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cluster_run)


def voucher(key: str) -> bytes:
    return json.dumps({"voucher_no": key}).encode()


def test_a_voucher_posted_under_two_idempotency_keys_counts_twice_and_a_missing_one_is_lost():
    effects = {"CT-1:post-voucher": ("POST", "/vouchers", voucher("CT-1")),
               "CT-1:post-voucher:g2": ("POST", "/vouchers", voucher("CT-1")),
               "CT-9:post-voucher": ("POST", "/vouchers", voucher("CT-9"))}
    outputs = [voucher("CT-1"), voucher("CT-1"), voucher("CT-9")]
    figures = cluster_run.tally(["CT-1", "CT-2"], effects, outputs)
    assert figures["lost"] == ["CT-2"] and figures["unexpected"] == ["CT-9"]
    assert figures["not_once"] == {"CT-1": 2} and figures["effects"] == 3
    assert figures["missing_outputs"] == ["CT-2"] and figures["duplicate_outputs"] == 1


def test_the_run_passes_only_when_every_key_has_one_effect_and_one_output_at_least(capsys):
    sent = ["CT-1", "CT-2"]
    effects = {f"{k}:post-voucher": ("POST", "/vouchers", voucher(k)) for k in sent}
    passing = cluster_run.tally(sent, effects, [voucher("CT-1"), voucher("CT-2"), voucher("CT-2")])
    assert cluster_run.report(passing, [], 2, 0, 0, 1.0) is True
    missing_output = cluster_run.tally(sent, effects, [voucher("CT-1")])
    assert cluster_run.report(missing_output, [], 2, 0, 0, 1.0) is False
    said = capsys.readouterr().out
    assert "FAIL: lost = 0, unexpected = 0, keys with effects != 1: 0, keys without an output: 1" in said
