"""`publish`: send the message to an exchange; the route acks its source only after the confirm."""

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
                       "Publishes are persistent and mandatory: an unroutable message is a failure.",
        "type": "object",
        "additionalProperties": False,
        "required": ["exchange", "routing_key"],
        "properties": {
            "exchange": {"type": "string", "minLength": 1, "description": "the exchange to publish to"},
            "routing_key": {"type": "string", "description": "the routing key"},
        },
        "examples": [{"exchange": "finance.review", "routing_key": "voucher.large"}],
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
