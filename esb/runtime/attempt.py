"""One delivery being processed: who it is, the state it came with, what it did, what to undo."""

from __future__ import annotations

from esb.runtime.broker import Delivery
from esb.runtime.envelope import user_headers
from esb.runtime.keys import effect_key
from esb.runtime.state import FIRST_ATTEMPT, RetryState


class Attempt:
    __slots__ = ("route", "delivery", "message_id", "owner", "state", "key", "claimed", "outputs",
                 "compensations", "generations", "settled", "marks", "trace")

    def __init__(self, route: str, delivery: Delivery, message_id: str, owner: str):
        self.route, self.delivery, self.message_id, self.owner = route, delivery, message_id, owner
        self.state: RetryState = FIRST_ATTEMPT
        self.key: str | None = None
        self.claimed = False           # holds a lease in the store: give it back when not finishing
        self.outputs: list = []        # (step label, Confirmation) of every publish so far
        self.compensations: list = []  # records of completed steps that can be undone
        self.generations: dict = {}    # step label -> generation of its downstream key
        self.settled = False
        self.marks: list | None = None  # a middleware's timestamps (metrics: taken up, last step ended)
        self.trace = None               # the tracing middleware's spans of this message

    def effect_key(self, message_id: str, step: str) -> str:
        """The Idempotency-Key of `step`'s effect, in the generation this message is at."""
        return effect_key(message_id, step, self.generations.get(step, 1))

    @property
    def original(self) -> tuple[bytes, str | None, dict]:
        """The message as its source sent it (a retried copy carries it in its sealed state)."""
        s, d = self.state, self.delivery
        if s.original_body is not None:
            return s.original_body, s.original_content_type, dict(s.original_headers or {})
        return d.body, d.content_type, user_headers(d.headers)
