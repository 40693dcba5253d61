"""JSON⇄XML in xmltodict's conventions, with arrays decided by an XSD rather than by luck.

The conventions (xmltodict's defaults, no namespace processing):

* element and attribute names as written, prefix included ("ns2:Amt", "@xsi:type");
* namespace declarations as "@xmlns" / "@xmlns:p" on each element that declares them, even
  where one repeats the declaration in scope;
* a text-only element is its text, an empty one None, XML text is never a number;
* text beside attributes or children is "#text": an element's text pieces joined, then
  stripped of XML whitespace at both ends ("x<b/> <c/>y" is "x y"); comments and processing
  instructions are dropped;
* siblings with the same name become a list (grouped, so interleaved names lose their order).

Beyond xmltodict: "#text" is written where the object puts it among the children (and read
back first when the element's text comes before its children), and an attribute that is null is
refused rather than written empty.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from esb.errors import TransformError
from esb.transform.numbers import MAX_NUMBER_CHARS, fixed_point
from esb.transform.safexml import LIBXML2_MAX_DEPTH, load_xsd, local_file, parse_xml, read_xml_file

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_XS = "http://www.w3.org/2001/XMLSchema"
_XML_SPACE = " \t\r\n"  # what XML calls whitespace; str.strip() would also eat U+00A0
_MISSING = object()


# ---------------------------------------------------------------------------- XML → JSON

def xml_to_json(xml: bytes | str | etree._Element, *, force_list: Iterable[str] = (),
                shape: XsdShape | None = None) -> dict[str, Any]:
    """Convert a document to xmltodict-style JSON.

    An element is a list when `shape` says its XSD allows more than one in that place (even if
    one is present); for elements the shape does not cover, when its name (local or as written)
    is in `force_list`; otherwise only when siblings repeat it.
    """
    root = xml if etree.iselement(xml) else parse_xml(xml)
    converter = _ToJson(frozenset(force_list), shape, _declarations(root))
    ctype = shape.root_type(root.tag) if shape is not None else None
    try:
        return {_written_name(root): converter.element(root, ctype, _Scope({}))}
    except RecursionError:  # only for a tree built elsewhere: parse_xml stops at 256 levels
        raise TransformError("XML to JSON failed: the document nests too deeply") from None


# Linear time in the document's size, whatever its shape: lxml's el.nsmap walks every
# declaration in scope, and el.attrib.items() looks each value up from the first attribute again
# (200,000 attributes took 237 s). Declarations are read once from the tree, attributes by XPath.
class _ToJson:
    def __init__(self, force_list: frozenset[str], shape: XsdShape | None,
                 declarations: dict[etree._Element, dict]):
        self.force_list = force_list
        self.shape = shape
        self.declarations = declarations

    def element(self, el: etree._Element, ctype: str | None, scope: _Scope) -> Any:
        result: dict[str, Any] = {}
        declared = self.declarations.get(el)
        if declared:  # as written, even where it repeats a declaration in scope (as xmltodict)
            for prefix, uri in declared.items():
                result["@xmlns" if prefix is None else f"@xmlns:{prefix}"] = uri
            scope = _Scope({**scope.uris, **declared})
        written = None
        for key, value in _attributes(el):
            name = _attribute_name(key, scope)
            if name is None:  # two prefixes name its namespace: ask which one it was written with
                written = written or _written_prefixes(el, scope)
                uri, _, local = key.rpartition("}")
                name = f"{written.get(key) or written[uri + '}']}:{local}"
            result["@" + name] = value
        if len(el):
            text = self._children(el, result, scope, ctype)
        else:  # a leaf, most elements of a message: no text to gather from tails
            text = el.text and (el.text.strip(_XML_SPACE) or None)
        if not result:
            return text
        if text is not None:
            result["#text"] = text
        return result

    def _children(self, el: etree._Element, result: dict[str, Any], scope: _Scope,
                  ctype: str | None) -> str | None:
        """Add el's child elements to result; return el's own text, gathered around them."""
        children = self.shape.children(ctype) if ctype is not None else None
        texts = [el.text] if el.text else []
        text_first = bool(texts) and bool(texts[0].strip(_XML_SPACE))
        if text_first:  # text before the children: "#text" goes before them, to come back there
            result["#text"] = None
        for child in el:
            if child.tail:
                texts.append(child.tail)
            if type(child.tag) is str:  # comments, PIs and entities have a function as tag
                self._add_child(result, child, children, scope)
        if text_first and len(result) == 1:  # no attribute, and only comments beside the text
            del result["#text"]
        # All of it joined, then stripped, as xmltodict does: "x<b/> <c/>y" is "x y".
        return "".join(texts).strip(_XML_SPACE) or None

    def _add_child(self, result: dict[str, Any], child: etree._Element,
                   children: Mapping[str, Child] | None, scope: _Scope) -> None:
        name = _written_name(child)
        local = child.tag.rpartition("}")[2]
        known = children.get(local) if children is not None else None
        if known is not None:
            as_list, ctype = known.repeated, known.type
        else:
            as_list, ctype = (local in self.force_list or name in self.force_list), None
        value = self.element(child, ctype, scope)
        existing = result.get(name, _MISSING)
        if existing is _MISSING:
            result[name] = [value] if as_list else value
        elif type(existing) is list:  # an element's own value is never a list
            existing.append(value)
        else:
            result[name] = [existing, value]


def _written_name(el: etree._Element) -> str:
    local = el.tag.rpartition("}")[2]
    prefix = el.prefix
    return f"{prefix}:{local}" if prefix else local


class _Scope:
    """The namespace declarations in scope (prefix -> uri), made anew only where one is declared."""

    def __init__(self, uris: dict):
        self.uris = uris
        self._prefixes: dict | None = None

    def prefix(self, uri: str) -> str | None:
        """The prefix bound to uri, _AMBIGUOUS if several are; the table is built when first needed."""
        if self._prefixes is None:
            self._prefixes = {}
            for prefix, bound in self.uris.items():
                if prefix:
                    self._prefixes[bound] = _AMBIGUOUS if bound in self._prefixes else prefix
        return self._prefixes.get(uri)


def _declarations(root: etree._Element) -> dict[etree._Element, dict]:
    """The namespaces each element declares, in one walk (holding the proxies keeps them stable).
    The element converted first gets all in scope, so a subtree's JSON names its namespaces too."""
    found: dict[etree._Element, dict] = {root: root.nsmap}
    pending: dict = {}
    for event, item in etree.iterwalk(root, events=("start-ns", "start")):
        if event == "start-ns":
            pending[item[0] or None] = item[1]
        elif pending:
            if item is not root:
                found[item] = pending
            pending = {}
    return found


_ALL_ATTRIBUTES = etree.XPath("@*")


def _attributes(el: etree._Element) -> list[tuple[str, str]]:
    attrib = el.attrib
    if len(attrib) < 16:
        return attrib.items()
    return [(found.attrname, str(found)) for found in _ALL_ATTRIBUTES(el)]


def _attribute_name(key: str, scope: _Scope) -> str | None:
    if key[0] != "{":
        return key
    uri, _, local = key[1:].partition("}")
    if uri == _XML_NS:
        return f"xml:{local}"
    prefix = scope.prefix(uri)
    if prefix is _AMBIGUOUS:
        return None
    return f"{prefix}:{local}" if prefix else local


_AMBIGUOUS: Any = object()  # what _Scope.prefix says when two prefixes name one namespace
_WRITTEN_WITH = etree.XPath("@*[namespace-uri() = $uri and substring-before(name(), ':') = $prefix]")


def _written_prefixes(el: etree._Element, scope: _Scope) -> dict[str, str]:
    """The prefix each of el's attributes was written with ({uri}local -> prefix), for the
    namespaces that several prefixes name: lxml keeps it but shows it only to XPath's name().
    One XPath per such prefix, so a wide element costs no more than its attributes."""
    found: dict[str, str] = {}
    for prefix, uri in scope.uris.items():
        if prefix and scope.prefix(uri) is _AMBIGUOUS:
            for attribute in _WRITTEN_WITH(el, uri=uri, prefix=prefix):
                found[attribute.attrname] = prefix
            found.setdefault(f"{{{uri}}}", prefix)  # a fallback for a tree built elsewhere
    return found


# ---------------------------------------------------------------------------- JSON → XML
#
# Written as text, not built with lxml: lxml chooses a namespace prefix itself (the first
# declaration of the URI it meets) and drops a declaration that repeats one in scope, so prefixes
# and declarations would not come out as the JSON wrote them. The writer checks what lxml checked:
# names, prefixes, characters XML cannot carry.

def json_to_xml(obj: Any, *, root: str | None = None, pretty: bool = False,
                max_number_chars: int = MAX_NUMBER_CHARS) -> str:
    """Convert xmltodict-style JSON to an XML document (a str with an XML declaration).

    A dict with one key is the document; anything else is wrapped in an element named `root`.
    A number whose text would be longer than `max_number_chars` is refused (see numbers.py).
    """
    name, value = _root_item(obj, root)
    out: list[str] = []
    try:
        if not _plain_name(name):
            raise _Unusual
        _write_common(out, name, value, 1, max_number_chars)
    except (_Unusual, TransformError, ValueError):  # the general writer writes it, or says what is wrong
        out = []
        _write(out, name, value, _XML_SCOPE, f"$.{name}", 1, max_number_chars)
    body = "".join(out)
    if pretty:  # the document is esb's own, so lxml may read it back without limits
        body = etree.tostring(etree.fromstring(body, _OWN_XML), encoding="unicode",
                              pretty_print=True)
    return f"{XML_DECLARATION}\n{body}"


_XML_SCOPE = MappingProxyType({"xml": _XML_NS})  # the one prefix bound without a declaration
_OWN_XML = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


def _root_item(obj: Any, root: str | None) -> tuple[str, Any]:
    if isinstance(obj, dict) and len(obj) == 1:
        (name, value), = obj.items()
        if isinstance(name, str) and not name.startswith(("@", "#")) \
                and not isinstance(value, (list, tuple)):
            return name, value
    if root is None:
        raise TransformError("JSON to XML needs one root element: give the converter a root "
                             "name, or an object with exactly one key holding one element")
    if isinstance(obj, (list, tuple)):
        raise TransformError(f"JSON to XML cannot wrap a bare list in <{root}>: a list needs "
                             "a key to name its elements")
    return root, obj


def _write(out: list[str], name: str, value: Any, scope: Mapping, path: str, depth: int,
           digits: int) -> None:
    """Write the element `name` for `value` (a dict, a scalar or None)."""
    if depth > LIBXML2_MAX_DEPTH:
        raise TransformError(f"the data at {path} nests deeper than {LIBXML2_MAX_DEPTH} "
                             "elements, more than esb would parse back")
    if not isinstance(value, dict):
        _check_name(name, scope, path, "element")
        if value is None:
            out.append(f"<{name}/>")
        else:
            out.append(f"<{name}>{_escape_text(_text(value, path, digits), path)}</{name}>")
        return
    head, scope, content = _start_tag(name, value, scope, path, digits)
    start = len(out)
    out.append(head + ">")
    for key, item in content:  # in the JSON's order: "#text" sits where the object puts it
        if key == "#text":
            if item is not None:
                out.append(_escape_text(_text(item, f"{path}.#text", digits), f"{path}.#text"))
        elif isinstance(item, (list, tuple)):
            for i, each in enumerate(item):
                if isinstance(each, (list, tuple)):
                    raise TransformError(f"the list at {path}.{key}[{i}] sits directly in a list, "
                                         "which XML cannot express")
                _write(out, key, each, scope, f"{path}.{key}[{i}]", depth + 1, digits)
        else:
            _write(out, key, item, scope, f"{path}.{key}", depth + 1, digits)
    if len(out) == start + 1:
        out[start] = head + "/>"
    else:
        out.append(f"</{name}>")


# The common case, a message of plain dicts, lists and scalars under plain names, costs a third
# of what _write costs (65 -> 19 µs of CPU for the bench's 1 KiB claim): no JSON path built for every
# element in case of an error, no namespace scope, one type test per value. Whatever it does not
# cover (attributes, "#text", prefixes, a subclass, a name or text XML refuses, a number too long)
# raises _Unusual, and _write does the whole document again: its output is the reference (the
# tests compare both), and its errors name the path.

class _Unusual(Exception):
    """Something only the general writer handles."""


def _write_common(out: list[str], name: str, value: Any, depth: int, digits: int) -> None:
    """Write the element `name` (a plain name, checked by the caller) for `value`."""
    if depth > LIBXML2_MAX_DEPTH:
        raise _Unusual
    if type(value) is not dict:
        out.append(f"<{name}/>" if value is None else f"<{name}>{_common_text(value, digits)}</{name}>")
        return
    start = len(out)
    out.append(f"<{name}>")
    for key, item in value.items():
        if key not in _PLAIN_NAMES and not _plain_name(key):  # "@a", "#text", "p:a" or not a name
            raise _Unusual
        kind = type(item)
        if kind is dict:
            _write_common(out, key, item, depth + 1, digits)
        elif kind is list or kind is tuple:
            for each in item:
                if type(each) is list or type(each) is tuple:
                    raise _Unusual
                _write_common(out, key, each, depth + 1, digits)
        elif depth >= LIBXML2_MAX_DEPTH:
            raise _Unusual
        elif item is None:
            out.append(f"<{key}/>")
        else:  # a leaf, most elements of a message: written here, without a call of its own
            out.append(f"<{key}>{_common_text(item, digits)}</{key}>")
    if len(out) == start + 1:
        out[start] = f"<{name}/>"
    else:
        out.append(f"</{name}>")


def _common_text(value: Any, digits: int) -> str:
    kind = type(value)
    if kind is str:
        # Three times cheaper than the regex: what XML cannot carry (C0 controls, surrogates,
        # U+FFFE/U+FFFF) and the CR it escapes are all unprintable; the rest falls to the regex.
        if value.isprintable() and "&" not in value and "<" not in value and ">" not in value:
            return value
        if _TEXT_SPECIAL.search(value) is None:
            return value
        if _NOT_XML.search(value):
            raise _Unusual
        return value.translate(_TEXT_ESCAPES)
    if kind is Decimal and value.is_finite():
        return fixed_point(value, "", digits)
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    raise _Unusual


def _plain_name(name: Any) -> bool:
    """Whether `name` is an XML name without a prefix (remembered: a message's names repeat)."""
    if type(name) is not str or not _NCNAME.fullmatch(name):
        return False
    if len(_PLAIN_NAMES) < _MAX_CACHED_NAMES:
        _PLAIN_NAMES.add(name)
    return True


def _start_tag(name: str, value: dict, scope: Mapping, path: str,
               digits: int) -> tuple[str, Mapping, list]:
    """The start tag (without its ">"), the namespaces in scope inside, and the content items."""
    declarations, attributes, content = [], [], []
    for key, item in value.items():
        if not isinstance(key, str):
            raise TransformError(f"the key {key!r} at {path} is not a string")
        if key[:1] != "@":
            content.append((key, item))
        elif key == "@xmlns" or key.startswith("@xmlns:"):
            declarations.append((key[1:], _namespace_uri(key, item, f"{path}.{key}")))
        else:
            attributes.append((key[1:], item))
    if declarations:
        scope = {**scope, **{key[6:] or None: uri for key, uri in declarations}}
    _check_name(name, scope, path, "element")
    parts = [f"<{name}"]
    for key, uri in declarations:
        parts.append(f' {key}="{_escape_attribute(uri, path + ".@" + key)}"')
    if attributes:
        parts.extend(_attribute_parts(name, attributes, scope, path, digits))
    return "".join(parts), scope, content


def _attribute_parts(element: str, attributes: list, scope: Mapping, path: str,
                     digits: int) -> Iterator[str]:
    seen: set[tuple[str, str]] = set()  # {uri}local of prefixed ones: p:x and q:x may be one name
    for name, value in attributes:
        where = f"{path}.@{name}"
        if value is None:
            raise TransformError(f"the attribute {name!r} of <{element}> at {where} is null: an "
                                 "attribute needs a value (leave the key out to write none)")
        _check_name(name, scope, where, "attribute")
        prefix, colon, local = name.partition(":")
        if colon:
            if (scope[prefix], local) in seen:
                raise TransformError(f"the attribute {name!r} at {where} names the same "
                                     "namespace and name as another attribute of the element")
            seen.add((scope[prefix], local))
        yield f' {name}="{_escape_attribute(_text(value, where, digits), where)}"'


def _namespace_uri(key: str, value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise TransformError(f"the namespace declaration at {path} must be a string")
    prefix = key[7:]
    if key != "@xmlns" and (not _NCNAME.fullmatch(prefix) or prefix == "xmlns"
                            or (prefix == "xml") != (value == _XML_NS) or not value):
        raise TransformError(f"the namespace declaration at {path} is not one XML allows "
                             "(a prefix declares a non-empty URI; xml and xmlns are reserved)")
    return value


# XML 1.0 (fifth edition) names, without the colon that namespaces reserve.
_NAME_START = ("A-Z_a-z\xc0-\xd6\xd8-\xf6\xf8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
               "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd"
               "\U00010000-\U000effff")
_NCNAME = re.compile(f"[{_NAME_START}][{_NAME_START}\\-.0-9\xb7\u0300-\u036f\u203f-\u2040]*")
_QNAME = re.compile(f"(?:{_NCNAME.pattern}:)?{_NCNAME.pattern}")
_VALID_NAMES: set[str] = set()  # names a message uses repeat in every message: check each once
_PLAIN_NAMES: set[str] = set()  # those of them without a prefix, for the common case
_MAX_CACHED_NAMES = 10_000


def _check_name(name: str, scope: Mapping, path: str, kind: str) -> None:
    if name not in _VALID_NAMES:
        if not _QNAME.fullmatch(name):
            key = name if kind == "element" else f"@{name}"
            raise TransformError(f"the key {key!r} at {path} is not a valid XML {kind} name")
        if len(_VALID_NAMES) < _MAX_CACHED_NAMES:
            _VALID_NAMES.add(name)
    if ":" in name:
        prefix = name.partition(":")[0]
        if prefix not in scope:
            raise TransformError(f"the name {name!r} at {path} uses the prefix {prefix!r}, "
                                 f"which no @xmlns:{prefix} declares")


# Characters XML 1.0 cannot carry, and those that must be escaped, in one class: most text
# has none, and then one search is all it costs.
_XML_CHAR = "\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff"
_NOT_XML = re.compile(f"[^{_XML_CHAR}]")
_TEXT_SPECIAL = re.compile(f"[^{_XML_CHAR}]|[&<>\r]")
_ATTRIBUTE_SPECIAL = re.compile(f"[^{_XML_CHAR}]|[&<>\"\t\n\r]")
# As lxml writes them: a raw CR, or tab/newline in an attribute, would not read back as written.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                    "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"})


def _escape_text(text: str, path: str) -> str:
    if _TEXT_SPECIAL.search(text) is None:
        return text
    if _NOT_XML.search(text):
        raise TransformError(f"the text at {path} holds characters XML cannot carry (control "
                             "characters or lone surrogates)")
    return text.translate(_TEXT_ESCAPES)


def _escape_attribute(text: str, path: str) -> str:
    if _ATTRIBUTE_SPECIAL.search(text) is None:
        return text
    if _NOT_XML.search(text):
        raise TransformError(f"the attribute value at {path} holds characters XML cannot carry "
                             "(control characters or lone surrogates)")
    return text.translate(_ATTRIBUTE_ESCAPES)


def _text(value: Any, path: str, digits: int) -> str:
    """The XML text of a JSON scalar, digit for digit; a float or an overlong number is refused."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return _int_text(value, path)
    if kind is Decimal:
        if not value.is_finite():
            raise TransformError(f"the Decimal {value} at {path} is not a number XML can carry")
        # xs:decimal has no exponent: 1E-7 is written 0.0000001, digit for digit, within bounds
        return fixed_point(value, path, digits)
    if isinstance(value, float):
        raise TransformError(f"a float reached the XML encoder at {path}; money must be Decimal")
    if isinstance(value, str):  # subclasses such as enums: their value, not their name
        return str.__str__(value)
    if isinstance(value, int):
        return _text(bool(value) if isinstance(value, bool) else int(value), path, digits)
    if isinstance(value, Decimal):
        return _text(Decimal(value), path, digits)
    raise TransformError(f"a value of type {kind.__name__} at {path} cannot become XML text")


def _int_text(value: int, path: str) -> str:
    try:
        return str(value)
    except ValueError:  # CPython writes at most 4,300 digits of an int (sys.set_int_max_str_digits)
        raise TransformError(f"the integer at {path} has too many digits to write out") from None


# ---------------------------------------------------------------------------- XSD shape

@dataclass(frozen=True)
class Child:
    """What a content model says about one child element name."""

    repeated: bool  # may occur more than once in its parent
    type: str | None  # key of its complex type in XsdShape.types; None for simple content


@dataclass(frozen=True)
class XsdShape:
    """Which child elements an XSD lets repeat, per complex type, ready for dict lookups.

    Types are keyed by "{namespace}Name" (anonymous ones get a made-up key); children by
    local name, since a content model names its children in one namespace in practice.
    """

    roots: Mapping[str, str | None]
    types: Mapping[str, Mapping[str, Child]]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> XsdShape:
        """Tabulate an XSD; it must compile (see load_xsd), so its shape can be trusted."""
        load_xsd(path)
        return _ShapeBuilder(Path(path)).build()

    def root_type(self, tag: str) -> str | None:
        """The type key of a global element, by "{ns}local" tag or else by local name."""
        found = self.roots.get(tag, _MISSING)
        if found is _MISSING:
            found = self.roots.get(tag.rpartition("}")[2])
        return found

    def children(self, type_key: str) -> Mapping[str, Child]:
        return self.types.get(type_key, _NO_CHILDREN)


_NO_CHILDREN: Mapping[str, Child] = MappingProxyType({})
_MANY = 2  # occurrence counts saturate here: all that matters is "more than one"
# child local name → (how many may occur, saturated at _MANY; the child's complex type key)
_Counts = dict[str, tuple[int, str | None]]


class _ShapeBuilder:
    """Reads an XSD (and its local includes/imports) once and tabulates every complex type."""

    def __init__(self, path: Path):
        self.path = path.resolve()
        self.elements: dict[str, tuple[etree._Element, str]] = {}
        self.complex_types: dict[str, tuple[etree._Element, str]] = {}
        self.groups: dict[str, tuple[etree._Element, str]] = {}
        self.tables: dict[str, _Counts] = {}
        self.pending: list[tuple[str, etree._Element, str]] = []
        # Keyed by the node itself, which also keeps lxml from handing out a new proxy for it.
        self.anonymous: dict[etree._Element, str] = {}

    def build(self) -> XsdShape:
        for schema, tns in self._documents():
            self._index(schema, tns)
        roots: dict[str, str | None] = {}
        for key, (node, tns) in self.elements.items():
            roots[key] = self._element_type(node, tns)
            roots.setdefault(key.rpartition("}")[2], roots[key])
        self.pending.extend((key, node, tns) for key, (node, tns) in self.complex_types.items())
        while self.pending:
            self._table(*self.pending.pop())
        types = {key: MappingProxyType({name: Child(count >= _MANY, ctype)
                                        for name, (count, ctype) in table.items()})
                 for key, table in self.tables.items()}
        return XsdShape(MappingProxyType(roots), MappingProxyType(types))

    def _documents(self) -> Iterator[tuple[etree._Element, str]]:
        """The schema and every local file it includes or imports, each once."""
        seen: set[Path] = set()
        queue = [(self.path, None)]
        while queue:
            path, chameleon = queue.pop()
            if path in seen:
                continue
            seen.add(path)
            schema = read_xml_file(path)
            tns = schema.get("targetNamespace") or chameleon or ""
            yield schema, tns
            for ref in schema.iterchildren(f"{{{_XS}}}include", f"{{{_XS}}}import",
                                           f"{{{_XS}}}redefine"):
                queue.extend(self._referenced(path, ref, tns))

    def _referenced(self, path: Path, ref: etree._Element, tns: str):
        location = ref.get("schemaLocation")
        if location is None:
            return []
        url = location if urlsplit(location).scheme else str(path.parent / location)
        target = local_file(url, self.path.parent)
        if target is None:
            raise TransformError(f"XSD refused: {path.name} refers to {location}, but esb reads "
                                 f"schemas only from local files under {self.path.parent}")
        is_include = ref.tag != f"{{{_XS}}}import"
        return [(target, tns if is_include else None)]

    def _index(self, schema: etree._Element, tns: str) -> None:
        tables = {f"{{{_XS}}}element": self.elements, f"{{{_XS}}}complexType": self.complex_types,
                  f"{{{_XS}}}group": self.groups}
        for node in schema.iterchildren(*tables):
            if node.get("name") is not None:
                tables[node.tag].setdefault(f"{{{tns}}}{node.get('name')}", (node, tns))

    def _element_type(self, node: etree._Element, tns: str) -> str | None:
        inline = node.find(f"{{{_XS}}}complexType")
        if inline is not None:
            if node not in self.anonymous:
                self.anonymous[node] = f"{{{tns}}}{node.get('name')}#{len(self.anonymous)}"
                self.pending.append((self.anonymous[node], inline, tns))
            return self.anonymous[node]
        type_name = node.get("type")
        # None for a simple type (its element holds text only) or for no type at all (anyType)
        return None if type_name is None else self._resolve(node, type_name, self.complex_types)

    def _resolve(self, node: etree._Element, qname: str, table: dict) -> str | None:
        prefix, colon, local = qname.rpartition(":")
        namespace = node.nsmap.get(prefix or None, "")
        key = f"{{{namespace}}}{local}"
        if key in table or namespace == _XS:
            return key if key in table else None
        # Chameleon includes and sloppy prefixes: fall back to a unique local name.
        matches = [k for k in table if k.rpartition("}")[2] == local]
        return matches[0] if len(matches) == 1 else None

    def _table(self, key: str, node: etree._Element, tns: str) -> _Counts:
        if key not in self.tables:
            self.tables[key] = {}  # a placeholder first: a type may contain itself
            self.tables[key] = self._content(node, tns)
        return self.tables[key]

    def _content(self, ctype: etree._Element, tns: str) -> _Counts:
        counts: _Counts = {}
        for part in ctype.iterchildren(etree.Element):
            kind = etree.QName(part).localname
            if kind in ("sequence", "choice", "all", "group"):
                counts = _in_sequence(counts, self._particle(part, tns))
            elif kind == "complexContent":
                counts = _in_sequence(counts, self._derived(part, tns))
        return counts

    def _derived(self, content: etree._Element, tns: str) -> _Counts:
        """complexContent: an extension adds to its base's model; a restriction restates it."""
        derivation = next(content.iterchildren(etree.Element), None)
        if derivation is None:
            return {}
        counts = {}
        if etree.QName(derivation).localname == "extension":
            base = self._resolve(derivation, derivation.get("base", ""), self.complex_types)
            if base is not None:
                counts = dict(self._table(base, *self.complex_types[base]))
        return _in_sequence(counts, self._content(derivation, tns))

    def _particle(self, node: etree._Element, tns: str) -> _Counts:
        kind = etree.QName(node).localname
        if kind == "element":
            counts = self._element_particle(node, tns)
        elif kind in ("sequence", "all"):
            counts = {}
            for part in node.iterchildren(etree.Element):
                counts = _in_sequence(counts, self._particle(part, tns))
        elif kind == "choice":
            counts = {}
            for part in node.iterchildren(etree.Element):
                counts = _in_choice(counts, self._particle(part, tns))
        elif kind == "group":
            counts = self._group(node, tns)
        else:  # xs:any, annotations: nothing known by name
            return {}
        return _times(counts, _max_occurs(node))

    def _element_particle(self, node: etree._Element, tns: str) -> _Counts:
        ref = node.get("ref")
        if ref is None:
            return {node.get("name", ""): (1, self._element_type(node, tns))}
        key = self._resolve(node, ref, self.elements)
        if key is None:
            return {}
        target, target_tns = self.elements[key]
        return {target.get("name", ""): (1, self._element_type(target, target_tns))}

    def _group(self, node: etree._Element, tns: str) -> _Counts:
        key = self._resolve(node, node.get("ref", ""), self.groups)
        if key is None:
            return {}
        group, group_tns = self.groups[key]
        model = next(group.iterchildren(f"{{{_XS}}}sequence", f"{{{_XS}}}choice",
                                        f"{{{_XS}}}all"), None)
        return self._particle(model, group_tns) if model is not None else {}


def _max_occurs(node: etree._Element) -> int:
    """maxOccurs, saturated: load_xsd has already checked that it is a number or unbounded."""
    value = node.get("maxOccurs", "1")
    return _MANY if value == "unbounded" else min(int(value), _MANY)


def _in_sequence(a: _Counts, b: _Counts) -> _Counts:
    """Names in a sequence add up: two particles named X allow two Xs."""
    merged = dict(a)
    for name, (count, ctype) in b.items():
        before = merged.get(name, (0, ctype))
        merged[name] = (min(before[0] + count, _MANY), before[1] or ctype)
    return merged


def _in_choice(a: _Counts, b: _Counts) -> _Counts:
    """Only one branch of a choice occurs: a name counts as often as its busiest branch."""
    merged = dict(a)
    for name, (count, ctype) in b.items():
        before = merged.get(name, (0, ctype))
        merged[name] = (max(before[0], count), before[1] or ctype)
    return merged


def _times(counts: _Counts, occurs: int) -> _Counts:
    if occurs == 1:
        return counts
    return {name: (min(count * occurs, _MANY), ctype) for name, (count, ctype) in counts.items()}
