"""The hardened XML parser, XSD and XSLT loading against defusedxml's attack samples."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from esb.errors import TransformError, ValidationError
from esb.transform.safexml import (
    XmlLimits,
    apply_xslt,
    load_xsd,
    load_xslt,
    parse_xml,
    read_xml_file,
    validate_xsd,
)

ENTITY_AND_DTD_ATTACKS = [
    "xmlbomb.xml", "xmlbomb2.xml", "quadratic.xml", "cyclic.xml",
    "dtd.xml", "dtd_element.xml", "external.xml", "external_file.xml",
]
XSL = 'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"'


@pytest.fixture(scope="module")
def attacks(testdata: Path) -> Path:
    return testdata / "xml-attacks"


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        self.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback() -> Iterator[tuple[str, list[str]]]:
    """A web server on 127.0.0.1 that records every request; yields (base URL, requests)."""
    requests: list[str] = []
    handler = type("Handler", (_Recorder,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _refused_quickly(call, *args) -> TransformError:
    started = time.perf_counter()
    with pytest.raises(TransformError) as caught:
        call(*args)
    assert time.perf_counter() - started < 1.0
    return caught.value


@pytest.mark.parametrize("name", ENTITY_AND_DTD_ATTACKS)
def test_each_entity_and_dtd_attack_is_refused_within_a_second(attacks, name):
    error = _refused_quickly(parse_xml, (attacks / name).read_bytes())
    assert "DTD" in str(error)


@pytest.mark.parametrize("name", ENTITY_AND_DTD_ATTACKS)
def test_each_attack_is_refused_as_text_and_as_a_file_too(attacks, name):
    _refused_quickly(parse_xml, (attacks / name).read_text(encoding="utf-8"))
    error = _refused_quickly(read_xml_file, attacks / name)
    assert name in str(error)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_billion_laughs_is_refused_in_any_encoding_without_expanding(attacks, encoding):
    # UTF-32 is not read by the prolog scan, so this also proves the parser itself never
    # expands an entity: the message would otherwise be about amplification, or take long.
    text = (attacks / "xmlbomb.xml").read_text(encoding="utf-8")
    error = _refused_quickly(parse_xml, text.encode(encoding))
    assert "DTD" in str(error)
    assert "1234567890" not in str(error)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-32"])
def test_external_file_entity_never_opens_the_file(attacks, tmp_path, encoding):
    # A named pipe: whoever opens it for reading releases the writer thread, so a read by
    # libxml2 cannot go unnoticed.
    probe = tmp_path / "secret.xml"
    os.mkfifo(probe)
    opened = threading.Event()

    def writer():
        with open(probe, "w", encoding="utf-8") as pipe:
            opened.set()
            pipe.write("<secret>TOP-SECRET</secret>")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    text = (attacks / "external_file.xml").read_text(encoding="utf-8")
    attack = text.replace("/PATH/TO/xmltestdata/simple.xml", str(probe)).encode(encoding)

    error = _refused_quickly(parse_xml, attack)
    time.sleep(0.05)
    assert not opened.is_set()
    assert "TOP-SECRET" not in str(error)

    reader = os.open(probe, os.O_RDONLY | os.O_NONBLOCK)  # the probe works: this read shows
    thread.join(timeout=2)
    os.close(reader)
    assert opened.is_set()


@pytest.mark.parametrize("name, url", [
    ("external.xml", b"http://www.w3schools.com/xml/note.xml"),
    ("dtd.xml", b"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd"),
])
def test_network_references_are_never_fetched(attacks, loopback, name, url):
    base, requests = loopback
    attack = (attacks / name).read_bytes().replace(url, f"{base}/fetched".encode())
    _refused_quickly(parse_xml, attack)
    assert requests == []


@pytest.mark.parametrize("name", ["simple.xml", "simple-ns.xml"])
def test_the_benign_controls_parse(attacks, name):
    root = parse_xml((attacks / name).read_bytes())
    assert etree.QName(root).localname == "root"
    assert [etree.QName(el).localname for el in root] == ["element", "element", "empty-element"]


def test_comments_and_processing_instructions_are_dropped(attacks):
    root = parse_xml((attacks / "simple-ns.xml").read_bytes())
    assert all(isinstance(node.tag, str) for node in root.iter())
    assert root.getprevious() is None


def test_a_str_with_an_encoding_declaration_parses():
    root = parse_xml('<?xml version="1.0" encoding="UTF-8"?>\n<Nm>Tilžės gatvė</Nm>')
    assert root.text == "Tilžės gatvė"


def test_a_str_declaring_another_encoding_is_read_as_the_text_it_is():
    root = parse_xml("<?xml version='1.0' encoding='ISO-8859-1'?><Nm>Müller</Nm>")
    assert root.text == "Müller"


def test_bytes_are_decoded_by_their_declaration():
    data = '<?xml version="1.0" encoding="ISO-8859-1"?><Nm>Müller</Nm>'.encode("latin-1")
    assert parse_xml(data).text == "Müller"


def test_a_syntax_error_names_its_line():
    with pytest.raises(TransformError, match=r"^XML syntax error at line 3, column \d+: .*mismatch"):
        parse_xml(b"<a>\n<b>\n</a>")


def test_an_undefined_entity_reference_is_refused():
    with pytest.raises(TransformError, match="Entity 'ee' not defined"):
        parse_xml(b"<root>&ee;</root>")


def test_the_predefined_entities_and_character_references_still_work():
    assert parse_xml(b"<a>&lt;&amp;&#65;&#x42;</a>").text == "<&AB"


def test_xinclude_is_never_processed(attacks):
    doc = (f'<root xmlns:xi="http://www.w3.org/2001/XInclude">'
           f'<xi:include href="{attacks / "simple.xml"}" parse="text"/></root>')
    root = parse_xml(doc)
    assert etree.QName(root[0]).localname == "include"
    assert "element" not in etree.tostring(root, encoding="unicode")


def test_a_document_over_the_size_limit_is_refused():
    with pytest.raises(TransformError, match="over the limit of 10"):
        parse_xml(b"<a>0123456789</a>", max_bytes=10)


def test_the_default_size_limit_is_twenty_megabytes():
    big = b"<a>" + b"x" * 20_000_001 + b"</a>"
    with pytest.raises(TransformError, match="20000000"):
        parse_xml(big)


def test_a_document_deeper_than_the_limit_is_refused():
    doc = b"<a>" * 5 + b"</a>" * 5
    assert parse_xml(doc, max_depth=5) is not None
    with pytest.raises(TransformError, match="deeper than 4 levels"):
        parse_xml(doc, max_depth=4)


def test_the_default_depth_limit_is_256_levels():
    assert parse_xml(b"<a>" * 256 + b"</a>" * 256) is not None
    with pytest.raises(TransformError, match="deeper than 256 levels"):
        parse_xml(b"<a>" * 257 + b"</a>" * 257)


def _element_with_attributes(count: int) -> bytes:
    return ("<r>\n<e " + " ".join(f'a{i}="v"' for i in range(count)) + "/></r>").encode()


def _in_scope_namespaces(count: int) -> bytes:
    outer = " ".join(f'xmlns:p{i}="urn:p{i}"' for i in range(count // 2))
    inner = " ".join(f'xmlns:q{i}="urn:q{i}"' for i in range(count - count // 2))
    return f"<r {outer}><e {inner}/><e/></r>".encode()


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_an_element_with_more_attributes_than_the_limit_is_refused_naming_it(encoding):
    assert parse_xml(_element_with_attributes(1_000).decode().encode(encoding)) is not None
    with pytest.raises(TransformError) as caught:
        parse_xml(_element_with_attributes(1_001).decode().encode(encoding))
    assert caught.value.message == ("XML refused: the element <e> on line 2 has 1,001 attributes, "
                                    "over the limit of 1,000")


def test_an_attribute_value_longer_than_the_limit_is_refused_naming_it():
    doc = '<r xmlns:p="urn:p"><e p:note="{}"/></r>'
    assert parse_xml(doc.format("x" * 65_536)) is not None
    with pytest.raises(TransformError) as caught:
        parse_xml(doc.format("x" * 65_537))
    assert caught.value.message == ("XML refused: the attribute note of the element <e> on line 1 is 65,537 "
                                    "characters long, over the limit of 65,536")


def test_a_text_longer_than_the_limit_is_refused_naming_its_element():
    assert parse_xml(b"<r><e>" + b"x" * 5_000_000 + b"</e></r>") is not None
    with pytest.raises(TransformError) as caught:
        parse_xml(b"<r><e>" + b"x" * 5_000_001 + b"</e></r>")
    assert caught.value.message == ("XML refused: a text in the element <e> on line 1 is 5,000,001 characters long, "
                                    "over the limit of 5,000,000")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_more_namespace_declarations_in_scope_than_the_limit_are_refused(encoding):
    assert parse_xml(_in_scope_namespaces(100).decode().encode(encoding)) is not None
    with pytest.raises(TransformError, match="more than 100 namespace declarations in scope at once"):
        parse_xml(_in_scope_namespaces(101).decode().encode(encoding))


def test_the_limits_can_be_chosen():
    limits = XmlLimits(attributes=2, attribute_chars=3, text_chars=4, namespaces=1)
    assert parse_xml('<r xmlns="urn:r" a="123" b="2">1234</r>', limits=limits) is not None
    for doc, limit in [('<r a="1" b="2" c="3"/>', "over the limit of 2"), ('<r a="1234"/>', "over the limit of 3"),
                       ("<r>12345</r>", "over the limit of 4"), ('<r xmlns="urn:r" xmlns:p="urn:p"/>', "than 1 ")]:
        with pytest.raises(TransformError, match=limit):
            parse_xml(doc, limits=limits)


def test_a_very_deep_document_is_refused_without_a_recursion_error():
    with pytest.raises(TransformError, match="deeper than"):
        parse_xml(b"<a>" * 100_000 + b"</a>" * 100_000)


def test_a_path_is_not_taken_for_a_document(attacks):
    with pytest.raises(TypeError, match="read_xml_file"):
        parse_xml(attacks / "simple.xml")


def test_a_missing_file_is_a_transform_error(tmp_path):
    with pytest.raises(TransformError, match="cannot read XML file"):
        read_xml_file(tmp_path / "missing.xml")


def test_a_schema_importing_from_the_network_is_refused(attacks):
    error = _refused_quickly(load_xsd, attacks / "schema-include.xsd")
    assert "http://www.w3.org/2001/xml.xsd" in str(error)


def test_a_schema_import_is_never_fetched(attacks, loopback, tmp_path):
    base, requests = loopback
    text = (attacks / "schema-include.xsd").read_text(encoding="utf-8")
    hostile = tmp_path / "hostile.xsd"
    hostile.write_text(text.replace("http://www.w3.org/2001/xml.xsd", f"{base}/xml.xsd")
                           .replace("https://example.invalid/invalid.xsd", f"{base}/x.xsd"),
                       encoding="utf-8")
    _refused_quickly(load_xsd, hostile)
    assert requests == []


def _schema(body: str, extra: str = "") -> str:
    return (f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" {extra}>{body}'
            "</xs:schema>")


def test_a_schema_may_include_a_file_beside_it(tmp_path):
    (tmp_path / "types.xsd").write_text(_schema('<xs:simpleType name="Code"><xs:restriction '
                                                'base="xs:string"><xs:maxLength value="4"/>'
                                                "</xs:restriction></xs:simpleType>"))
    (tmp_path / "main.xsd").write_text(_schema('<xs:include schemaLocation="types.xsd"/>'
                                               '<xs:element name="Cd" type="Code"/>'))
    schema = load_xsd(tmp_path / "main.xsd")
    validate_xsd(schema, parse_xml(b"<Cd>BOOK</Cd>"))
    with pytest.raises(ValidationError):
        validate_xsd(schema, parse_xml(b"<Cd>BOOKED</Cd>"))


def test_a_schema_may_not_include_a_file_outside_its_folder(tmp_path):
    (tmp_path / "types.xsd").write_text(_schema(""))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "main.xsd").write_text(_schema('<xs:include schemaLocation="../types.xsd"/>'))
    with pytest.raises(TransformError, match="only from local files"):
        load_xsd(tmp_path / "sub" / "main.xsd")


def test_an_included_schema_with_a_dtd_is_refused(tmp_path, attacks):
    (tmp_path / "bomb.xsd").write_bytes((attacks / "xmlbomb.xml").read_bytes())
    (tmp_path / "main.xsd").write_text(_schema('<xs:include schemaLocation="bomb.xsd"/>'))
    with pytest.raises(TransformError, match="main.xsd includes bomb.xsd, which is refused: .*DTD"):
        load_xsd(tmp_path / "main.xsd")


def test_a_schema_that_does_not_compile_says_where(tmp_path):
    (tmp_path / "bad.xsd").write_text(_schema('\n<xs:element name="a" type="NoSuchType"/>'))
    with pytest.raises(TransformError, match="XSD bad.xsd does not compile: line 2: .*NoSuchType"):
        load_xsd(tmp_path / "bad.xsd")


def test_every_iso20022_schema_loads(testdata):
    schemas = sorted((testdata / "iso20022").glob("*/*.xsd"))
    assert len(schemas) == 6
    for path in schemas:
        assert isinstance(load_xsd(path), etree.XMLSchema)


def test_validation_names_the_missing_element_and_its_line(testdata):
    folder = testdata / "iso20022" / "camt053"
    schema = load_xsd(folder / "camt.053.001.02.xsd")
    validate_xsd(schema, read_xml_file(folder / "camt053.v2.minimal.xml"))
    with pytest.raises(ValidationError, match=r"line 3: .*BkToCstmrStmt.*Expected is \( Stmt \)"):
        validate_xsd(schema, read_xml_file(folder / "camt053.v2.wrong.xml"))


def test_validation_lists_only_the_first_few_errors(tmp_path):
    (tmp_path / "s.xsd").write_text(_schema('<xs:element name="r"><xs:complexType><xs:sequence>'
                                            '<xs:element name="n" type="xs:int" '
                                            'maxOccurs="unbounded"/></xs:sequence>'
                                            "</xs:complexType></xs:element>"))
    doc = parse_xml("<r>\n" + "<n>x</n>\n" * 5 + "</r>")
    with pytest.raises(ValidationError) as caught:
        validate_xsd(load_xsd(tmp_path / "s.xsd"), doc)
    assert str(caught.value).count("line ") == 3
    assert "(and 2 more)" in str(caught.value)


@pytest.mark.parametrize("name", ["xalan_exec.xsl", "xalan_write.xsl"])
def test_xalan_extension_stylesheets_are_refused_at_load(attacks, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where redirect:write would have put its file
    error = _refused_quickly(load_xslt, attacks / name)
    assert "XSLT refused" in str(error)
    assert list(tmp_path.iterdir()) == []


def _stylesheet(tmp_path: Path, body: str, name: str = "t.xsl") -> Path:
    path = tmp_path / name
    path.write_text(f'<xsl:stylesheet version="1.0" {XSL}>{body}</xsl:stylesheet>')
    return path


def test_a_plain_stylesheet_compiles_and_runs(tmp_path):
    xslt = load_xslt(_stylesheet(tmp_path, '<xsl:param name="who"/><xsl:template match="/">'
                                           '<out><xsl:value-of select="concat(a, $who)"/></out>'
                                           "</xsl:template>"))
    result = apply_xslt(xslt, parse_xml(b"<a>hi </a>"), {"who": "O'Neil"})
    assert str(result).endswith("<out>hi O'Neil</out>\n")


def test_a_stylesheet_cannot_read_a_file_with_document(tmp_path):
    (tmp_path / "secret.xml").write_text("<secret>TOP-SECRET</secret>")
    xslt = load_xslt(_stylesheet(tmp_path, '<xsl:template match="/"><xsl:copy-of '
                                           "select=\"document('secret.xml')\"/></xsl:template>"))
    with pytest.raises(TransformError, match="XSLT failed: .*denied"):
        apply_xslt(xslt, parse_xml(b"<a/>"))


def test_a_stylesheet_cannot_write_a_file_with_exslt_document(tmp_path):
    path = _stylesheet(tmp_path, '<xsl:template match="/"><exsl:document href="out.txt">x'
                                 "</exsl:document></xsl:template>")
    path.write_text(path.read_text().replace(
        "<xsl:stylesheet ", '<xsl:stylesheet xmlns:exsl="http://exslt.org/common" '
                            'extension-element-prefixes="exsl" '))
    with pytest.raises(TransformError, match="extension elements"):
        load_xslt(path)
    assert not (tmp_path / "out.txt").exists()


def test_exslt_functions_are_allowed(tmp_path):
    path = _stylesheet(tmp_path, '<xsl:template match="/"><out><xsl:value-of '
                                 "select=\"str:padding(3, '*')\"/></out></xsl:template>")
    path.write_text(path.read_text().replace(
        "<xsl:stylesheet ", '<xsl:stylesheet xmlns:str="http://exslt.org/strings" '))
    assert apply_xslt(load_xslt(path), parse_xml(b"<a/>")).getroot().text == "***"


def test_a_stylesheet_may_import_one_beside_it_but_not_from_the_network(tmp_path, loopback):
    _stylesheet(tmp_path, '<xsl:template name="t"><sub/></xsl:template>', "sub.xsl")
    main = _stylesheet(tmp_path, '<xsl:import href="sub.xsl"/><xsl:template match="/">'
                                 '<xsl:call-template name="t"/></xsl:template>')
    assert "<sub/>" in str(apply_xslt(load_xslt(main), parse_xml(b"<a/>")))

    base, requests = loopback
    remote = _stylesheet(tmp_path, f'<xsl:import href="{base}/evil.xsl"/>', "remote.xsl")
    with pytest.raises(TransformError, match="only from local files"):
        load_xslt(remote)
    assert requests == []


def test_an_imported_stylesheet_is_checked_for_extensions_too(tmp_path, attacks):
    (tmp_path / "exec.xsl").write_bytes((attacks / "xalan_exec.xsl").read_bytes())
    main = _stylesheet(tmp_path, '<xsl:import href="exec.xsl"/>')
    with pytest.raises(TransformError, match="XSLT refused: t.xsl includes exec.xsl, .*getRuntime"):
        load_xslt(main)


def test_extension_calls_are_found_in_attribute_value_templates_but_not_in_plain_text(tmp_path):
    header = '<xsl:stylesheet xmlns:rt="urn:rt" '
    plain = _stylesheet(tmp_path, '<xsl:template match="/"><out href="mailto:info(x)"/>'
                                  "</xsl:template>", "plain.xsl")
    plain.write_text(plain.read_text().replace("<xsl:stylesheet ", header))
    assert load_xslt(plain) is not None
    template = _stylesheet(tmp_path, '<xsl:template match="/"><out v="{rt:go()}"/>'
                                     "</xsl:template>", "avt.xsl")
    template.write_text(template.read_text().replace("<xsl:stylesheet ", header))
    with pytest.raises(TransformError, match="rt:go"):
        load_xslt(template)


def test_a_stylesheet_that_does_not_compile_is_a_transform_error(tmp_path):
    with pytest.raises(TransformError, match="XSLT t.xsl does not compile"):
        load_xslt(_stylesheet(tmp_path, '<xsl:template match="/"><xsl:value-of select="(("/>'
                                        "</xsl:template>"))
