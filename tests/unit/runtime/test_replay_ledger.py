"""The replay ledger remembers each replayed dead letter by route, message id and when it died."""

from __future__ import annotations

import pytest

from esb.errors import EsbError
from esb.runtime.replays import Replay, ReplayLedger


def test_a_dead_letter_is_claimed_once_and_the_second_claim_says_when_and_by_whom(tmp_path):
    ledger = ReplayLedger(tmp_path / "var" / "replays.sqlite3")
    assert ledger.claim("r", "m", "09:00", at="T1", user="alice") is None
    assert ledger.claim("r", "m", "09:00", at="T2", user="bob") == Replay("m", "09:00", "T1", "alice")
    assert ledger.claim("r", "m", "10:00", at="T3", user="bob") is None      # it died again: a new dead letter
    assert ledger.claim("other", "m", "09:00", at="T4", user="bob") is None  # the same message in another route
    assert ReplayLedger(tmp_path / "var" / "replays.sqlite3").last("r", "m") == Replay("m", "10:00", "T3", "bob")


def test_again_overwrites_and_a_released_claim_puts_back_what_it_overwrote(tmp_path):
    ledger = ReplayLedger(tmp_path / "replays.sqlite3")
    ledger.claim("r", "m", "09:00", at="T1", user="alice")
    earlier = ledger.earlier("r", "m", "09:00")
    assert ledger.claim("r", "m", "09:00", at="T2", user="bob", again=True) is None
    assert ledger.earlier("r", "m", "09:00").user == "bob"
    ledger.release("r", "m", "09:00", at="T2", restore=earlier)
    assert ledger.earlier("r", "m", "09:00") == earlier
    ledger.claim("r", "n", "09:00", at="T3", user="bob")
    ledger.release("r", "n", "09:00", at="T3")
    assert ledger.earlier("r", "n", "09:00") is None


def test_a_ledger_that_cannot_be_opened_is_one_sentence_naming_the_file(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(EsbError, match=r"cannot open the replay ledger .*taken/replays.sqlite3"):
        ReplayLedger(tmp_path / "taken" / "replays.sqlite3")
