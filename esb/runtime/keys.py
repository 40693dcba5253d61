"""What names one business message in the idempotency store, and what names its effects downstream."""

from __future__ import annotations

from typing import Any

from esb.errors import PermanentError

MAX_KEY = 512


def store_key(value: Any, where: str) -> str:
    """A key is a string or an integer, typed so that the two never collide: `{"ref": "1"}` and
    `{"ref": 1}` are two messages. Anything else (a list, an object, a boolean, a fraction) names
    no single message: a permanent error saying so."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        kind = {bool: "a boolean", list: "a list", dict: "an object"}.get(type(value), f"a {type(value).__name__}")
        raise PermanentError(f"the idempotency {where} is {kind} ({_shown(value)}): it must be a string "
                             f"or an integer", step="idempotency")
    if value == "":
        raise PermanentError(f"the idempotency {where} is empty", step="idempotency")
    text = f"s:{value}" if isinstance(value, str) else f"i:{value}"
    if len(text) - 2 > MAX_KEY:  # the limit is on the key as the message has it, not on our type prefix
        raise PermanentError(f"the idempotency {where} is longer than {MAX_KEY} characters", step="idempotency")
    return text


def effect_key(message_id: str, step: str, generation: int = 1) -> str:
    """The Idempotency-Key sent downstream for one step's effect. A compensated effect replayed is
    a new effect: its generation (2, 3, ...) makes a new key the endpoint has not seen."""
    return f"{message_id}:{step}" if generation <= 1 else f"{message_id}:{step}:g{generation}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
