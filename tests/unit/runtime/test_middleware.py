"""Hooks: closing hooks run in reverse order, a failing middleware harms nobody, logs carry the message."""

from __future__ import annotations

import pytest
from runtime_fakes import delivery
from structlog.testing import capture_logs

from esb.errors import PermanentError
from esb.runtime.attempt import Attempt
from esb.runtime.middleware import HOOKS, MAX_REASON, Hooks, LogMiddleware, Middleware, short

CLOSING = ("on_ack", "on_skip", "on_retry", "on_dead_letter", "on_give_back", "after_message")


class Named(Middleware):
    """Appends its name to a shared list on every hook it has."""

    def __init__(self, name, seen):
        for hook in HOOKS:
            if hook != "after_step":
                setattr(self, hook, lambda *_a, _hook=hook, **_f: seen.append((_hook, name)))


class Broken(Middleware):
    def on_ack(self, attempt, **facts):
        raise RuntimeError("a middleware bug")

    def before_message(self, attempt):
        raise RuntimeError("a middleware bug")


def attempt():
    return Attempt("oa-expense-to-voucher", delivery("m-7"), "m-7", "w:1")


@pytest.mark.parametrize("hook", CLOSING)
def test_closing_hooks_run_in_reverse_middleware_order(hook):
    seen = []
    hooks = Hooks([Named("first", seen), Named("second", seen)])
    getattr(hooks, hook)(attempt())
    assert seen == [(hook, "second"), (hook, "first")]


@pytest.mark.parametrize("hook", ["before_message", "on_step_failed", "on_forged_state", "on_resumed",
                                  "on_compensated"])
def test_opening_hooks_run_in_middleware_order(hook):
    seen = []
    hooks = Hooks([Named("first", seen), Named("second", seen)])
    getattr(hooks, hook)(attempt())
    assert seen == [(hook, "first"), (hook, "second")]


def test_a_middleware_that_raises_does_not_stop_the_others_nor_the_message():
    seen = []
    hooks = Hooks([Named("first", seen), Broken(), Named("last", seen)])
    with capture_logs() as logs:
        hooks.on_ack(attempt(), outputs=1, filtered=False)  # does not raise
        hooks.before_message(attempt())
    assert seen == [("on_ack", "last"), ("on_ack", "first"), ("before_message", "first"),
                    ("before_message", "last")]
    assert [(e["event"], e["hook"]) for e in logs] == [("middleware_failed", "on_ack"),
                                                       ("middleware_failed", "before_message")]


def test_a_lone_middleware_that_raises_does_not_stop_the_message():
    with capture_logs() as logs:
        Hooks([Broken()]).on_ack(attempt(), outputs=1, filtered=False)
    assert logs[0]["event"] == "middleware_failed"


def test_a_hook_nobody_overrides_does_nothing():
    Hooks([]).on_dead_letter(attempt(), step="s", error_class="permanent", compensation="none", reason="r")


def test_steps_are_wanted_only_when_someone_overrides_after_step():
    class Steps(Middleware):
        def after_step(self, attempt, step, message):
            pass
    assert not Hooks([]).wants_steps
    assert not Hooks([LogMiddleware(), Named("n", [])]).wants_steps
    assert Hooks([LogMiddleware(), Steps()]).wants_steps


def test_the_forged_state_warning_carries_the_route_and_the_message_id():
    with capture_logs() as logs:
        Hooks([LogMiddleware()]).on_forged_state(attempt(), headers=["x-esb-resume-step", "x-esb-attempt"])
    assert len(logs) == 1
    entry = logs[0]
    assert entry["event"] == "forged_state_dropped" and entry["log_level"] == "warning"
    assert entry["route"] == "oa-expense-to-voucher" and entry["message_id"] == "m-7"
    assert entry["headers"] == ["x-esb-attempt", "x-esb-resume-step"]


def test_a_failed_step_is_logged_with_its_step_and_error_class():
    with capture_logs() as logs:
        LogMiddleware().on_step_failed(attempt(), PermanentError("400 Bad Request", step="create-voucher"))
    assert (logs[0]["event"], logs[0]["step"], logs[0]["error_class"]) == ("step_failed", "create-voucher",
                                                                            "permanent")


def test_a_long_reason_is_cut_to_its_limit():
    assert short("x" * 5000) == "x" * (MAX_REASON - 1) + "…"
    assert short("short") == "short"
