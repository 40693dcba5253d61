"""`json_to_xml` and `xml_to_json`: turn the body from one format into the other, exactly."""

from __future__ import annotations

import dataclasses
from typing import Any

from esb.errors import ConfigError, TransformError
from esb.message import JSON, XML, Message
from esb.steps.base import BuildContext, Step, StepIO
from esb.transform.assets import load_xsd_file, without_hint
from esb.transform.xmljson import XsdShape, json_to_xml, xml_to_json

_XML_NAME = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_.-]*$"}


@dataclasses.dataclass(frozen=True)
class JsonToXmlStep(Step):
    kind = "json_to_xml"
    schema = {
        "description": "Turn the JSON body into an XML document (with an XML declaration). Keys become "
                       "elements, `@name` keys attributes and `#text` the text; a list repeats its element; "
                       "numbers are written digit for digit. `root` names the element that wraps the body; "
                       "without it the body must be an object with exactly one key.",
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "root": {**_XML_NAME, "description": "the root element that wraps the body",
                     "examples": ["VoucherReceipt"]},
            "pretty": {"type": "boolean", "description": "indent the document (default false)"},
        },
        "examples": [{"root": "VoucherReceipt"}, {"root": "Document", "pretty": True}],
    }

    label: str
    root: str | None = None
    pretty: bool = False

    @classmethod
    def build(cls, config: dict | None, label: str, ctx: BuildContext, at: tuple) -> JsonToXmlStep:
        config = config or {}
        return cls(label, config.get("root"), config.get("pretty", False))

    def run(self, message: Message, io: StepIO) -> Message:
        if not message.is_json:
            raise TransformError(f"json_to_xml needs a JSON body, not {message.content_type}")
        # `root` always wraps: json_to_xml alone would take a one-key body as the document itself.
        wrapped = {self.root: message.body} if self.root and not isinstance(message.body, list) else message.body
        return message.with_body(json_to_xml(wrapped, root=self.root, pretty=self.pretty), XML)


@dataclasses.dataclass(frozen=True)
class XmlToJsonStep(Step):
    kind = "xml_to_json"
    schema = {
        "description": "Turn the XML body into JSON: elements become keys, attributes `@name`, mixed text "
                       "`#text`; all values stay text. Name the elements that may repeat in `force_list` "
                       "(or give the document's `xsd`, which says so) so that one and many both come out as lists.",
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "xsd": {"type": "string", "minLength": 1, "description": "an XML Schema whose repeating elements "
                    "become lists (relative to the project root)",
                    "examples": ["transformers/schemas/camt.053.001.02.xsd"]},
            "force_list": {"type": "array", "items": {**_XML_NAME, "description": "an element name"},
                           "description": "elements that are always lists", "examples": [["Stmt", "Ntry", "TxDtls"]]},
        },
        "examples": [{"force_list": ["Stmt", "Ntry", "TxDtls"]}, {"xsd": "transformers/schemas/camt.053.001.02.xsd"}],
    }

    label: str
    xsd: str | None = None
    force_list: tuple[str, ...] = ()
    _shape: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, config: dict | None, label: str, ctx: BuildContext, at: tuple) -> XmlToJsonStep:
        config = config or {}
        relative = config.get("xsd")
        shape = _shape(relative, ctx, at + ("xsd",)) if relative else None
        return cls(label, relative, tuple(config.get("force_list", ())), shape)

    def run(self, message: Message, io: StepIO) -> Message:
        if message.is_json or not isinstance(message.body, (str, bytes)):
            raise TransformError(f"xml_to_json needs an XML body, not {message.content_type}")
        return message.with_body(xml_to_json(message.body, force_list=self.force_list, shape=self._shape), JSON)


def _shape(relative: str, ctx: BuildContext, at: tuple) -> XsdShape | None:
    path = ctx.asset(relative, at)
    if path is None:
        return None
    try:
        load_xsd_file(path, relative)  # a schema that does not compile has no trustworthy shape
        return XsdShape.from_file(path)
    except ConfigError as exc:
        ctx.error(at, without_hint(exc), exc.hint)
    except TransformError as exc:
        ctx.error(at, f"{relative}: the XML Schema cannot be used: {exc.message}",
                  "fix the XSD; xs:include and xs:import must name files beside it")
    return None
