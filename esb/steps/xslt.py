"""`xslt`: transform the XML body with an XSLT 1.0 stylesheet that may not touch files or the network."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from typing import Any

from esb.errors import ConfigError, TransformError
from esb.message import TEXT, XML, Message
from esb.steps.base import BuildContext, Step, StepIO
from esb.transform.assets import load_stylesheet, without_hint
from esb.transform.numbers import plain
from esb.transform.safexml import apply_xslt, parse_xml

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
_DECLARED = re.compile(r"^\s*<\?xml[^>]*\?>\s*")
_FILE = {"type": "string", "minLength": 1, "description": "an XSLT file relative to the project root",
         "examples": ["transformers/voucher-to-pain001.xsl"]}


@dataclasses.dataclass(frozen=True)
class XsltStep(Step):
    kind = "xslt"
    schema = {
        "description": "Transform the XML body with an XSLT 1.0 stylesheet (EXSLT available). The stylesheet "
                       "cannot read or write files or reach the network. `params` are passed as XSLT string "
                       "parameters (`<xsl:param name=\"...\"/>`). The result is an XML document, or text when "
                       "the stylesheet says `<xsl:output method=\"text\"/>`.",
        "anyOf": [
            _FILE,
            {"type": "object", "additionalProperties": False, "required": ["file"],
             "properties": {
                 "file": _FILE,
                 "params": {"type": "object", "description": "string parameters by name",
                            "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_.-]*$"},
                            "additionalProperties": {"type": ["string", "number", "boolean"]},
                            "examples": [{"debtor_bic": "BANKDEFFXXX"}]},
             }},
        ],
        "examples": ["transformers/voucher-to-pain001.xsl",
                     {"file": "transformers/voucher-to-pain001.xsl", "params": {"debtor_bic": "BANKDEFFXXX"}}],
    }

    label: str
    file: str
    params: tuple[tuple[str, str], ...] = ()
    _stylesheet: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, config: str | dict, label: str, ctx: BuildContext, at: tuple) -> XsltStep:
        where = at if isinstance(config, str) else at + ("file",)
        config = {"file": config} if isinstance(config, str) else config
        relative = config["file"]
        path = ctx.asset(relative, where)
        stylesheet = None
        if path is not None:
            try:
                stylesheet = load_stylesheet(path, relative)
            except ConfigError as exc:
                ctx.error(where, without_hint(exc), exc.hint)
        params = tuple((name, _text(value)) for name, value in (config.get("params") or {}).items())
        return cls(label, relative, params, stylesheet)

    def run(self, message: Message, io: StepIO) -> Message:
        if message.is_json or not isinstance(message.body, (str, bytes)):
            raise TransformError(f"xslt needs an XML body, not {message.content_type}; convert it first (json_to_xml)")
        document = parse_xml(message.body)
        try:
            result = apply_xslt(self._stylesheet, document, dict(self.params))
        except TransformError as exc:
            raise TransformError(f"{self.file}: {exc.message}") from None
        if result.getroot() is None:  # <xsl:output method="text"/>: CSV, fixed-width files
            return message.with_body(str(result), TEXT)
        return message.with_body(DECLARATION + _DECLARED.sub("", str(result), count=1), XML)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain(value, "an XSLT parameter")  # keeps its digits: 12.50 stays "12.50", 1E+3 is "1000"
    return str(value)
