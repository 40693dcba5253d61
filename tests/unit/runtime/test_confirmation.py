"""Confirmation: the outcome of one publish, completed on the broker's thread, read on any other."""

from __future__ import annotations

import threading

import pytest
from structlog.testing import capture_logs

from esb.runtime.broker import Confirmation, NotConfirmed, wait_all


def test_callbacks_added_before_completion_run_once_on_the_completing_thread():
    confirmation, seen = Confirmation(), []
    confirmation.add_done_callback(lambda c: seen.append((threading.current_thread().name, c.exception())))
    worker = threading.Thread(target=confirmation.set_result, name="broker-io")
    worker.start()
    worker.join()
    assert seen == [("broker-io", None)]


def test_a_callback_added_after_completion_runs_at_once():
    confirmation, seen = Confirmation(), []
    confirmation.set_exception(NotConfirmed("nacked"))
    confirmation.add_done_callback(lambda c: seen.append(c.exception()))
    assert [type(e) for e in seen] == [NotConfirmed]


def test_result_raises_the_refusal_and_returns_the_value_otherwise():
    refused, confirmed = Confirmation(), Confirmation()
    refused.set_exception(NotConfirmed("the connection closed before the confirm"))
    confirmed.set_result(7)
    with pytest.raises(NotConfirmed, match="closed"):
        refused.result(0)
    assert confirmed.result(0) == 7


def test_waiting_for_an_unconfirmed_publish_times_out():
    confirmation = Confirmation()
    assert confirmation.wait(0.01) is False
    with pytest.raises(TimeoutError):
        confirmation.result(0.01)
    assert wait_all([Confirmation(), confirmation], 0.01) is False


def test_wait_all_returns_once_every_confirmation_completes_on_another_thread():
    confirmations = [Confirmation() for _ in range(3)]
    timer = threading.Timer(0.05, lambda: [c.set_result() for c in confirmations])
    timer.start()
    assert wait_all(confirmations, 5) is True
    timer.join()


def test_a_failing_callback_is_logged_and_the_others_still_run():
    confirmation, seen = Confirmation(), []
    confirmation.add_done_callback(lambda c: 1 / 0)
    confirmation.add_done_callback(lambda c: seen.append("second"))
    with capture_logs() as logs:
        confirmation.set_result()
    assert seen == ["second"]
    assert [entry["event"] for entry in logs] == ["confirmation_callback_failed"]


def test_a_confirmation_completes_only_once():
    confirmation = Confirmation()
    confirmation.set_result()
    with pytest.raises(RuntimeError):
        confirmation.set_exception(NotConfirmed("late"))
