"""The key that seals esb's state: made once per project, read whole by every worker."""

from __future__ import annotations

import multiprocessing
import stat

from esb.runtime.state import KEY_FILE, load_key


def _signature(root) -> str:
    return load_key(root, None).sign("route", "id", b"body", {})


def test_workers_starting_together_all_read_the_one_key_that_was_made(tmp_path):
    with multiprocessing.get_context("fork").Pool(8) as pool:
        signatures = pool.map(_signature, [tmp_path] * 32)
    assert len(set(signatures)) == 1
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "var").iterdir()] == ["state.key"]  # no drafts left behind


def test_a_configured_key_is_used_and_no_key_file_is_made(tmp_path):
    seal = load_key(tmp_path, "a configured key of some length")
    assert seal.verify("r", "m", b"x", seal.sealed("r", "m", b"x", {"x-esb-attempt": 2}))
    assert not (tmp_path / KEY_FILE).exists()
