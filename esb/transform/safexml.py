"""The one hardened XML parser of esb, and XSD and XSLT loading that cannot reach out."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lxml import etree

from esb.errors import TransformError, ValidationError

MAX_BYTES = 20_000_000
# libxml2 refuses deeper documents itself unless huge_tree is on, which esb never turns on.
LIBXML2_MAX_DEPTH = 256


@dataclasses.dataclass(frozen=True)
class XmlLimits:
    """What one document may hold beyond its size and depth; every refusal names the limit.

    The defaults sit far above real finance XML and far below what costs: ISO 20022 elements
    carry at most two attributes (Ccy, a scheme), SOAP with WS-Security under 20 namespaces, and
    the longest ISO text (Max100KBinary, base64) about 137,000 characters; 5,000,000 characters
    still hold a 3.7 MB attachment in base64. libxml2 alone would allow 10,000,000 characters
    per text or attribute and any number of attributes and namespaces.
    """

    attributes: int = 1_000  # per element
    attribute_chars: int = 65_536  # per attribute value
    text_chars: int = 5_000_000  # per run of text
    namespaces: int = 100  # declarations in scope at once: xml_to_json copies them per declaring element


LIMITS = XmlLimits()

_DTD_REFUSED = "XML refused: the document declares a DTD (<!DOCTYPE>), which esb never processes"
_XSL = "http://www.w3.org/1999/XSL/Transform"
# EXSLT functions are built into libxslt and touch nothing outside the document; every other
# prefixed function is someone's extension (Xalan's java:, Saxon's, ...) and is refused.
_SAFE_FUNCTION_NAMESPACES = frozenset({
    "http://exslt.org/common", "http://exslt.org/math", "http://exslt.org/sets",
    "http://exslt.org/strings", "http://exslt.org/dates-and-times",
})
_FUNCTION_CALL = re.compile(r"([A-Za-z_][\w.-]*):([A-Za-z_][\w.-]*)\s*\(")
_AVT = re.compile(r"\{([^{}]*)\}")
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.S)
_XML_DECL_ENCODING = re.compile(r"""^(<\?xml\s[^>]*?\bencoding\s*=\s*["'])[^"']*(["'])""")
_ERRORS_SHOWN = 3


def parse_xml(data: bytes | str, *, max_bytes: int = MAX_BYTES,
              max_depth: int = LIBXML2_MAX_DEPTH, limits: XmlLimits = LIMITS) -> etree._Element:
    """Parse a document from memory, refusing DTDs, entities, oversize and overdeep input and
    anything over `limits` (attributes per element, attribute and text length, namespaces).

    Comments and processing instructions are dropped. A max_depth above 256 cannot be granted:
    libxml2 itself stops there unless huge_tree is on, which esb never turns on.
    """
    raw = _as_bytes(data)
    if len(raw) > max_bytes:
        raise TransformError(f"XML refused: the document is {len(raw)} bytes, over the limit of "
                             f"{max_bytes}")
    root = _parse(raw, _shared_parser(), max_depth=max_depth)
    _check_limits(root, raw, limits)
    return root


def read_xml_file(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES) -> etree._Element:
    """Parse a local file (an asset such as a stylesheet or a sample) with parse_xml."""
    return _parse_file(Path(path), _shared_parser(), max_bytes=max_bytes)


def load_xsd(path: str | os.PathLike[str]) -> etree.XMLSchema:
    """Compile an XSD; xs:include and xs:import are read only from files beside it."""
    path = Path(path).resolve()
    resolver = _LocalFiles(path.parent)
    root = _parse_file(path, _new_parser(resolver))
    try:
        return etree.XMLSchema(root)
    except (etree.XMLSchemaParseError, TransformError) as exc:
        raise _load_error("XSD", path, resolver, exc) from None


def load_xslt(path: str | os.PathLike[str]) -> etree.XSLT:
    """Compile a stylesheet that can neither read nor write files, reach the network nor call
    extension functions; xsl:import and xsl:include are read only from files beside it."""
    path = Path(path).resolve()
    resolver = _LocalFiles(path.parent, check=_refuse_extensions)
    root = _parse_file(path, _new_parser(resolver))
    _refuse_extensions(root, path.name)
    try:
        return etree.XSLT(root, access_control=etree.XSLTAccessControl.DENY_ALL, regexp=False)
    except (etree.XSLTParseError, TransformError) as exc:
        raise _load_error("XSLT", path, resolver, exc) from None


def apply_xslt(xslt: etree.XSLT, root: etree._Element,
               params: dict[str, str] | None = None) -> etree._XSLTResultTree:
    """Run a stylesheet from load_xslt; parameters are passed as strings, never as XPath."""
    quoted = {name: etree.XSLT.strparam(value) for name, value in (params or {}).items()}
    try:
        return xslt(root, **quoted)
    except etree.XSLTApplyError as exc:
        raise TransformError(f"XSLT failed: {exc}") from None


def validate_xsd(schema: etree.XMLSchema, root: etree._Element) -> None:
    """Raise ValidationError naming the first few schema violations and their lines."""
    try:
        schema.assertValid(root)
    except etree.DocumentInvalid as exc:
        errors = list(exc.error_log)
        shown = "; ".join(f"line {e.line}: {_local_names(e.message)}"
                          for e in errors[:_ERRORS_SHOWN])
        more = f" (and {len(errors) - _ERRORS_SHOWN} more)" if len(errors) > _ERRORS_SHOWN else ""
        raise ValidationError(f"XML does not match its schema: {shown}{more}") from None


def local_file(url: str, root: Path) -> Path | None:
    """The file under root that url names, or None for anything remote or outside root."""
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        candidate = unquote(parts.path)
    elif parts.scheme == "" and not parts.netloc:
        candidate = unquote(url)
    else:
        return None
    target = Path(candidate).resolve()
    if not target.is_relative_to(root.resolve()) or not target.is_file():
        return None
    return target


class _LocalFiles(etree.Resolver):
    """Serve includes and imports from files under one directory; refuse anything else.

    Each file is vetted like a message (no DTD, well-formed) and handed to libxml2 as bytes,
    so libxml2 never opens a URL itself.
    """

    def __init__(self, root: Path, check: Callable[[etree._Element, str], None] | None = None):
        super().__init__()
        self.root = root
        self.check = check
        self.refused: list[str] = []

    def resolve(self, url, pubid, context):
        target = local_file(url, self.root)
        if target is None:
            raise self._refuse(f"refers to {url}, but esb reads schemas and stylesheets only "
                               f"from local files under {self.root}")
        try:
            data = target.read_bytes()
            vetted = _parse(data, _shared_parser(), base_url=str(target))
            if self.check is not None:
                self.check(vetted, target.name)
        except (OSError, TransformError) as exc:
            raise self._refuse(f"includes {target.name}, which is refused: {exc}") from None
        return self.resolve_string(data, context, base_url=str(target))

    def _refuse(self, reason: str) -> TransformError:
        # libxml2 reports a failed include of a schema only as "failed to parse"; the reason
        # is kept here for load_xsd and load_xslt to tell.
        self.refused.append(reason)
        return TransformError(f"XML refused: {reason}")


class _RefuseAll(etree.Resolver):
    """The message parser resolves nothing: no DTD, no entity, no XInclude target."""

    def resolve(self, url, pubid, context):
        raise TransformError(f"XML refused: the document refers to {url}, and esb never fetches "
                             "external resources")


_local = threading.local()


def _shared_parser() -> etree.XMLParser:
    # An lxml parser serialises its users with a lock; one per thread avoids the contention.
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _new_parser(_RefuseAll())
    return parser


def _new_parser(resolver: etree.Resolver) -> etree.XMLParser:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             dtd_validation=False, huge_tree=False, remove_comments=True,
                             remove_pis=True, collect_ids=False)
    parser.resolvers.add(resolver)
    return parser


def _as_bytes(data: bytes | str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if not isinstance(data, str):
        raise TypeError(f"parse_xml takes the document as bytes or str, not {type(data).__name__}"
                        "; use read_xml_file for a file")
    # The text is handed to libxml2 as UTF-8, so its declaration must say so.
    text = _XML_DECL_ENCODING.sub(r"\g<1>UTF-8\g<2>", data.removeprefix("\ufeff"), count=1)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TransformError(f"XML refused: the text holds a lone surrogate at character "
                             f"{exc.start}, which is not valid Unicode") from None


def _parse_file(path: Path, parser: etree.XMLParser, *, max_bytes: int = MAX_BYTES) -> etree._Element:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TransformError(f"XML refused: {path} is {size} bytes, over the limit of {max_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        raise TransformError(f"cannot read XML file {path}: {exc.strerror}") from None
    try:
        return _parse(data, parser, base_url=str(path))
    except TransformError as exc:
        raise TransformError(f"{path}: {exc.message}") from None


def _parse(raw: bytes, parser: etree.XMLParser, *, base_url: str | None = None,
           max_depth: int = LIBXML2_MAX_DEPTH) -> etree._Element:
    if _declares_doctype(raw):
        raise TransformError(_DTD_REFUSED)
    try:
        root = etree.fromstring(raw, parser, base_url=base_url)
    except etree.XMLSyntaxError as exc:
        raise TransformError(_syntax_message(exc)) from None
    # The prolog scan above reads ASCII-compatible and UTF-16 text; this catches the rest.
    # Either way the parser expanded nothing: it does not resolve entities or load DTDs.
    if _has_dtd(root):
        raise TransformError(_DTD_REFUSED)
    if max_depth < LIBXML2_MAX_DEPTH and _deeper_than(max_depth)(root):
        raise TransformError(f"XML refused: the document nests deeper than {max_depth} levels")
    return root


# Each check is one pass in C (~40 ms per MB), so it runs only when the document could break its
# limit: an element with 1,001 attributes needs 1,001 "=" in the bytes, 101 declarations 101
# "xmlns". Bytes in UTF-16 or EBCDIC do not spell them so, and are always checked.
_TOO_MANY_ATTRIBUTES = etree.XPath("(//*[count(@*) > $limit])[1]")
_ATTRIBUTE_TOO_LONG = etree.XPath("(//@*[string-length() > $limit])[1]")
_TEXT_TOO_LONG = etree.XPath("(//text()[string-length() > $limit])[1]")


def _check_limits(root: etree._Element, raw: bytes, limits: XmlLimits) -> None:
    ascii_bytes = _ascii_bytes(raw)
    if not ascii_bytes or raw.count(b"=") > limits.attributes:
        for el in _TOO_MANY_ATTRIBUTES(root, limit=limits.attributes):
            raise TransformError(f"XML refused: {_element(el)} has {len(el.attrib):,} attributes, over the "
                                 f"limit of {limits.attributes:,}")
    if len(raw) > limits.attribute_chars:
        for value in _ATTRIBUTE_TOO_LONG(root, limit=limits.attribute_chars):
            raise TransformError(f"XML refused: the attribute {_local_names(value.attrname)} of "
                                 f"{_element(value.getparent())} is {len(value):,} characters long, over the "
                                 f"limit of {limits.attribute_chars:,}")
    if len(raw) > limits.text_chars:
        for text in _TEXT_TOO_LONG(root, limit=limits.text_chars):
            raise TransformError(f"XML refused: a text in {_element(text.getparent())} is {len(text):,} "
                                 f"characters long, over the limit of {limits.text_chars:,}")
    if not ascii_bytes or raw.count(b"xmlns") > limits.namespaces:
        _check_namespaces(root, limits.namespaces)


def _ascii_bytes(raw: bytes) -> bool:
    """Whether the document's markup is one byte per ASCII character (UTF-8, Latin-1, ...)."""
    head = raw[3:5] if raw.startswith(b"\xef\xbb\xbf") else raw[:2]
    return len(head) == 2 and head[0] in b"< \t\r\n" and head[1] != 0


def _element(el: etree._Element) -> str:
    return f"the element <{_local_names(el.tag)}> on line {el.sourceline}"


def _check_namespaces(root: etree._Element, limit: int) -> None:
    """Count the namespace declarations in scope as the tree is walked (only ns events: cheap)."""
    in_scope = 0
    for event, _ in etree.iterwalk(root, events=("start-ns", "end-ns")):
        in_scope += 1 if event == "start-ns" else -1
        if in_scope > limit:
            raise TransformError(f"XML refused: the document has more than {limit:,} namespace "
                                 "declarations in scope at once")


def _declares_doctype(raw: bytes) -> bool:
    """Whether a <!DOCTYPE> stands in the prolog, read before libxml2 sees any of it."""
    head = _ascii_compatible(raw)
    pos = 0
    while item := _PROLOG_ITEM.match(head, pos):
        pos = item.end()
    return head.startswith(b"<!DOCTYPE", pos)


def _ascii_compatible(raw: bytes) -> bytes:
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:]
    if raw.startswith((b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")):
        # UTF-16: only the prolog matters, and it is short.
        codec = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else (
            "utf-16-le" if raw[0] == 0x3C else "utf-16-be")
        return raw[:8192].decode(codec, errors="replace").encode("utf-8", errors="replace")
    return raw


def _has_dtd(root: etree._Element) -> bool:
    info = root.getroottree().docinfo
    return bool(info.doctype) or info.internalDTD is not None or info.externalDTD is not None


@lru_cache(maxsize=8)
def _deeper_than(depth: int) -> etree.XPath:
    # One location step per level: libxml2 walks each level once, in C, with no recursion.
    return etree.XPath("boolean(" + "/*" * (depth + 1) + ")")


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    entry = exc.error_log.last_error if len(exc.error_log) else None
    if entry is not None and entry.message.startswith("Excessive depth"):
        return f"XML refused: the document nests deeper than {LIBXML2_MAX_DEPTH} levels"
    line, column = (entry.line, entry.column) if entry is not None else exc.position
    message = entry.message if entry is not None else exc.msg
    return f"XML syntax error at line {line}, column {column}: {message.strip()}"


def _load_error(kind: str, path: Path, resolver: _LocalFiles, exc: Exception) -> TransformError:
    if resolver.refused:
        return TransformError(f"{kind} refused: {path.name} {resolver.refused[0]}")
    return TransformError(f"{kind} {path.name} does not compile: {_first_error(exc)}")


def _first_error(exc: Exception) -> str:
    entries = list(getattr(exc, "error_log", []))
    if not entries:
        return str(exc)
    return f"line {entries[0].line}: {_local_names(entries[0].message)}"


def _local_names(message: str) -> str:
    """"Element '{urn:iso:...}Stmt'" reads better as "Element 'Stmt'"."""
    return re.sub(r"\{[^}]*\}", "", message)


def _expressions(el: etree._Element) -> list[str]:
    """The XPath an element carries: any attribute of an XSLT instruction, and the {...}
    attribute value templates of a literal result element."""
    if el.tag.startswith(f"{{{_XSL}}}"):
        return list(el.attrib.values())
    return [template for value in el.attrib.values() for template in _AVT.findall(value)]


def _refuse_extensions(root: etree._Element, name: str) -> None:
    """Refuse extension elements and non-EXSLT extension functions before libxslt compiles."""
    for el in root.iter(etree.Element):
        declared = el.get(f"{{{_XSL}}}extension-element-prefixes")
        if declared is None and el.tag in (f"{{{_XSL}}}stylesheet", f"{{{_XSL}}}transform"):
            declared = el.get("extension-element-prefixes")
        if declared is not None:
            raise TransformError(f"XSLT refused: {name} declares extension elements ({declared}), "
                                 "which esb never runs")
        for expression in _expressions(el):
            for call in _FUNCTION_CALL.finditer(expression):
                uri = el.nsmap.get(call.group(1))
                if uri not in _SAFE_FUNCTION_NAMESPACES:
                    raise TransformError(f"XSLT refused: {name} calls the extension function "
                                         f"{call.group(1)}:{call.group(2)}() from {uri}, which "
                                         "esb never runs")
