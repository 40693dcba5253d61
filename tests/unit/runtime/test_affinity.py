"""cpu.affinity: each worker process pinned to a core of its own (esb.runtime.affinity)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from esb.errors import ConfigErrors
from esb.loading.config import load_settings
from esb.runtime.affinity import core_for


def test_auto_gives_worker_i_the_i_th_allowed_core_round_robin_and_a_list_picks_from_the_list():
    assert [core_for("auto", i, [2, 3]) for i in range(4)] == [2, 3, 2, 3]
    assert [core_for("0,2", i, [0, 1, 2, 3]) for i in range(3)] == [0, 2, 0]
    assert core_for("off", 1, [0, 1]) is None


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores")
def test_a_pinned_worker_and_every_thread_it_starts_afterwards_run_on_its_core_only():
    script = ("import json, os, threading; from esb.runtime.affinity import pin_worker; core = pin_worker('auto'); "
              "seen = []; t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0)))); "
              "t.start(); t.join(); print(json.dumps([core, sorted(os.sched_getaffinity(0)), seen[0]]))")
    allowed = sorted(os.sched_getaffinity(0))
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "ESB_WORKER_INDEX": "1"},
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == [allowed[1], [allowed[1]], [allowed[1]]]


def test_a_core_the_process_may_not_use_leaves_the_worker_unpinned_with_a_warning():
    script = ("import os; from esb.runtime.affinity import pin_worker; before = os.sched_getaffinity(0); "
              "print(pin_worker('4096'), os.sched_getaffinity(0) == before)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "None True"
    assert "cpu_affinity_ignored" in result.stdout + result.stderr


def test_the_setting_comes_from_config_or_ESB_CPU_AFFINITY_and_anything_else_is_refused(tmp_path: Path):
    assert load_settings(tmp_path, {}).cpu_affinity == "off"
    assert load_settings(tmp_path, {"ESB_CPU_AFFINITY": "auto"}).cpu_affinity == "auto"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "esb.yaml").write_text("cpu:\n  affinity: sometimes\n")
    with pytest.raises(ConfigErrors) as refused:
        load_settings(tmp_path, {})
    assert "cpu.affinity" in str(refused.value) or "affinity" in str(refused.value)
