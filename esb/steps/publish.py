"""`publish`: send the message to an exchange; the route acks its source only after the confirm.

`exchange: ""` is AMQP's default exchange: every queue is bound to it by its own name, so the
routing key names the queue. It is never declared (esb.runtime.topology skips it)."""

from __future__ import annotations

import dataclasses

from esb.message import Message
from esb.steps.base import BuildContext, Step, StepIO


@dataclasses.dataclass(frozen=True)
class PublishStep(Step):
    kind = "publish"
    side_effect = True
    schema = {
        "description": "Publish the message as it stands to an exchange with a routing key. "
                       "Publishes are persistent and mandatory: an unroutable message is a failure. "
                       "`exchange: \"\"` is the default exchange, which routes to the queue named by the routing key.",
        "type": "object",
        "additionalProperties": False,
        "required": ["exchange", "routing_key"],
        "properties": {
            "exchange": {"type": "string", "description": "the exchange to publish to; \"\" is the default exchange"},
            "routing_key": {"type": "string", "description": "the routing key"},
        },
        "examples": [{"exchange": "finance.review", "routing_key": "voucher.large"},
                     {"exchange": "", "routing_key": "finance.archive"}],
    }

    label: str
    exchange: str
    routing_key: str

    @classmethod
    def build(cls, config: dict, label: str, ctx: BuildContext, at: tuple) -> PublishStep:
        return cls(label, config["exchange"], config["routing_key"])

    def run(self, message: Message, io: StepIO) -> Message:
        io.publish(self, self.exchange, self.routing_key, message)
        return message
