"""`log`: write a line to the route log with chosen fields (never the whole body)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import structlog

from esb.errors import TransformError
from esb.message import Message
from esb.steps.base import BuildContext, Step, StepIO
from esb.transform.expressions import Expression, ExpressionError, compile_expression, search_message
from esb.transform.numbers import plain

LEVELS = ("debug", "info", "warning", "error")
# Keys the log line itself carries (or that the runtime binds); a field may not shadow them.
RESERVED = frozenset({"event", "message", "message_id", "step", "route", "level", "timestamp", "logger"})


@dataclasses.dataclass(frozen=True)
class LogStep(Step):
    kind = "log"
    schema = {
        "description": "Log the event `route_log` with the message id, the step label, a text and "
                       "`fields` computed by JMESPath from the body. The body itself is never logged: "
                       "pick the fields you need. The message goes on unchanged.",
        # One schema for both forms (object keywords ignore text and the reverse): an anyOf
        # would report the text form's complaint about a mapping with a typo in it.
        "type": ["string", "object"],
        "minLength": 1,
        "additionalProperties": False,
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "minLength": 1, "description": "the text of the log line"},
            "level": {"enum": list(LEVELS), "description": "info unless said otherwise"},
            "fields": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
                       "description": "name: JMESPath expression, logged beside the text",
                       "examples": [{"claim": "claim_id", "total": "total"}]},
        },
        "examples": ["voucher posted", {"message": "large voucher", "level": "warning",
                                        "fields": {"claim": "claim_id", "total": "total"}}],
    }

    label: str
    message: str
    level: str = "info"
    fields: tuple[tuple[str, str], ...] = ()
    _expressions: tuple[tuple[str, Expression], ...] = dataclasses.field(default=(), repr=False, compare=False)

    @classmethod
    def build(cls, config: Any, label: str, ctx: BuildContext, at: tuple) -> LogStep:
        if isinstance(config, str):
            return cls(label, config)
        fields = config.get("fields", {})
        expressions = [(name, e) for name, text in fields.items()
                       if (e := _field(name, text, ctx, at + ("fields", name))) is not None]
        return cls(label, config["message"], config.get("level", "info"), tuple(fields.items()), tuple(expressions))

    def run(self, message: Message, io: StepIO) -> Message:
        values = {name: _value(expression, message) for name, expression in self._expressions}
        logger = structlog.get_logger("esb.route")  # looked up per call: tests and reloads reconfigure structlog
        getattr(logger, self.level)("route_log", message_id=message.message_id, step=self.label,
                                    message=self.message, **values)
        return message


def _field(name: str, text: str, ctx: BuildContext, at: tuple) -> Expression | None:
    if name in RESERVED:
        ctx.error(at, f"the field name '{name}' is taken by the log line itself",
                  "choose another name; taken: " + ", ".join(sorted(RESERVED)), key=True)
        return None
    try:
        expression = compile_expression(text)
    except ExpressionError as exc:
        ctx.error(at, str(exc), exc.hint)
        return None
    if expression.tree["type"] in ("current", "identity"):
        ctx.error(at, "a log field cannot be the whole body (it may hold personal or bank data)",
                  "log the fields you need, e.g. claim_id")
        return None
    return expression


def _value(expression: Expression, message: Message) -> Any:
    """A field that cannot be computed is logged as the reason: a log line never fails a message."""
    try:
        return _printable(search_message(expression, message, "log"))
    except TransformError as exc:
        return f"<not available: {exc.message}>"


def _printable(value: Any) -> Any:
    # Renderers know nothing of Decimal (JSON would write Decimal('1.50')); its text is exact.
    if isinstance(value, Decimal):
        return plain(value, "a log field")
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value
