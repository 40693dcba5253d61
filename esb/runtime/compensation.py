"""Undo the completed steps of a message that will not complete, in reverse order (the Saga's compensation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from esb.message import Message
from esb.runtime.attempt import Attempt
from esb.runtime.envelope import body_of, stored_body
from esb.runtime.middleware import Hooks, short


def record(step, message: Message, key: str) -> dict:
    """What undoing `step` will need: the adapter, the operation, the message as the step left it,
    and the key its effect was made under."""
    return {"step": step.label, "adapter": step.adapter, "operation": step.compensate, "key": key,
            **stored_body(message), "message_id": message.message_id}


def compensate(attempt: Attempt, adapters: Callable[[str], Any], retrying, hooks: Hooks) -> tuple[str, dict]:
    """Run every compensation in reverse; say how it went (`none`, `ok`, `failed: ...`) and the key
    generations after it: a step whose effect was undone is a new effect if the message is replayed,
    so its generation goes up; one whose undoing failed keeps its key (the effect is still there)."""
    generations = dict(attempt.generations)
    if not attempt.compensations:
        return "none", generations
    failures = []
    for entry in reversed(attempt.compensations):
        message = Message(body_of(entry), entry["content_type"], {}, entry["message_id"])
        key = entry.get("key") or f"{entry['message_id']}:{entry['step']}"
        try:
            retrying(adapters(entry["adapter"]).call, entry["operation"], message,
                     idempotency_key=f"{key}:compensate")
        except Exception as exc:  # noqa: BLE001 - report every failed compensation, keep going
            failures.append(f"{entry['step']}: {short(str(exc))}")
            hooks.on_compensated(attempt, step=entry["step"], error=exc)
            continue
        generations[entry["step"]] = generations.get(entry["step"], 1) + 1
        hooks.on_compensated(attempt, step=entry["step"], error=None)
    return ("failed: " + "; ".join(failures) if failures else "ok"), generations
