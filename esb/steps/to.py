"""`to`: call an operation of a configured adapter (REST, SOAP, SFTP)."""

from __future__ import annotations

import dataclasses

from esb.errors import TransformError
from esb.loading.registry import did_you_mean
from esb.message import Message
from esb.steps.base import BuildContext, Step, StepIO

_NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$"}


@dataclasses.dataclass(frozen=True)
class ToStep(Step):
    kind = "to"
    side_effect = True
    blocking = True
    schema = {
        "description": "Call an operation of an adapter from adapters/*.yaml. The response replaces "
                       "the body, or is put into one field of it with `into`. `compensate` names the "
                       "operation that undoes this call if a later step fails permanently.",
        "type": "object",
        "additionalProperties": False,
        "required": ["adapter", "operation"],
        "properties": {
            "adapter": {**_NAME, "description": "the adapter's name (adapters/NAME.yaml)"},
            "operation": {**_NAME, "description": "an operation listed in the adapter's `operations`"},
            "into": {**_NAME, "description": "put the response body in this field instead of replacing the body"},
            "compensate": {
                "type": "object", "additionalProperties": False, "required": ["operation"],
                "properties": {"operation": {**_NAME, "description": "the undoing operation"}},
                "description": "what to call to undo this step when the route fails later",
            },
        },
        "examples": [{"adapter": "ledger-rest", "operation": "create_voucher",
                      "into": "voucher", "compensate": {"operation": "cancel_voucher"}}],
    }

    label: str
    adapter: str
    operation: str
    into: str | None = None
    compensate: str | None = None

    @classmethod
    def build(cls, config: dict, label: str, ctx: BuildContext, at: tuple) -> ToStep:
        compensate = (config.get("compensate") or {}).get("operation")
        spec = ctx.adapters.get(config["adapter"])
        if config["adapter"] in ctx.adapters and spec is None:
            pass  # the adapter file itself is broken and reported on its own
        elif spec is None:
            ctx.error(at + ("adapter",), f"no adapter is named '{config['adapter']}'",
                      did_you_mean(config["adapter"], sorted(ctx.adapters)) or "add adapters/NAME.yaml")
        else:
            for where, op in (("operation", config["operation"]), ("compensate", compensate)):
                if op is not None and op not in spec.operations:
                    ctx.error(at + (where,), f"the adapter '{spec.name}' has no operation '{op}'",
                              did_you_mean(op, sorted(spec.operations)))
        return cls(label, config["adapter"], config["operation"], config.get("into"), compensate)

    def run(self, message: Message, io: StepIO) -> Message:
        response = io.call(self, self.adapter, self.operation, message)
        if self.into is None:
            result = message.with_body(response.body, response.content_type, response.json_text)
        elif isinstance(message.body, dict):
            result = message.with_body({**message.body, self.into: response.body})
        else:
            raise TransformError(f"cannot put the response into '{self.into}': the body is not a JSON object")
        if self.compensate is not None and hasattr(io, "completed"):
            io.completed(self, result)
        return result
