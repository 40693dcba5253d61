"""The `xslt` step: stylesheets run with parameters and cannot touch files, the network or Java."""

import pytest
from routebuild import route_builders

from esb.errors import TransformError
from esb.message import JSON, TEXT, XML, Message
from esb.steps.pipeline import StepFailed, run_steps

HEAD = "name: r\nsource: {exchange: bank.events, binding_key: k}\nsteps:\n"
OPEN = '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"'

RECEIPT = OPEN + """>
  <xsl:param name="bank" select="'none'"/>
  <xsl:param name="batch"/>
  <xsl:template match="/voucher">
    <Receipt bank="{$bank}" batch="{$batch}"><Total><xsl:value-of select="total"/></Total></Receipt>
  </xsl:template>
</xsl:stylesheet>
"""

CSV = OPEN + """>
  <xsl:output method="text"/>
  <xsl:template match="/voucher"><xsl:value-of select="id"/>;<xsl:value-of select="total"/></xsl:template>
</xsl:stylesheet>
"""

READS_A_FILE = OPEN + """>
  <xsl:template match="/"><stolen><xsl:copy-of select="document('/etc/hostname')"/></stolen></xsl:template>
</xsl:stylesheet>
"""

# libxslt implements XSLT 1.1's xsl:document, which writes a file; only DENY_ALL stops it.
WRITES_A_FILE = OPEN + """>
  <xsl:template match="/"><xsl:document href="{TARGET}" method="text">written</xsl:document><ok/></xsl:template>
</xsl:stylesheet>
"""

EXSLT_WRITE = OPEN + """ xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl">
  <xsl:template match="/"><exsl:document href="written.txt" method="text">x</exsl:document></xsl:template>
</xsl:stylesheet>
"""

REFUSES = OPEN + """>
  <xsl:template match="/"><xsl:message terminate="yes">no total in this voucher</xsl:message></xsl:template>
</xsl:stylesheet>
"""

VOUCHER = "<voucher><id>V-7</id><total>50000.10</total></voucher>"


class NoIO:
    def call(self, step, adapter, operation, message):
        raise AssertionError("xslt must not call adapters")

    def publish(self, step, exchange, routing_key, message):
        raise AssertionError("xslt must not publish")


build, route_with = route_builders(HEAD)


def run(route, body, content_type=XML) -> Message:
    return run_steps(route.steps, Message(body, content_type=content_type), NoIO())


def failure(route, body, content_type=XML) -> TransformError:
    with pytest.raises(StepFailed) as caught:
        run(route, body, content_type)
    assert isinstance(caught.value.error, TransformError)
    return caught.value.error


def test_a_stylesheet_named_by_path_turns_xml_into_an_xml_document(tmp_path):
    route = route_with(tmp_path, "  - xslt: transformers/receipt.xsl\n", {"transformers/receipt.xsl": RECEIPT})
    out = run(route, VOUCHER)
    assert out.content_type == XML
    assert out.body == ('<?xml version="1.0" encoding="UTF-8"?>\n'
                        '<Receipt bank="none" batch=""><Total>50000.10</Total></Receipt>\n')


def test_params_are_passed_as_strings_even_when_they_look_like_numbers(tmp_path):
    steps = "  - xslt: {file: receipt.xsl, params: {bank: \"O'Neil & Co\", batch: 007.50}}\n"
    route = route_with(tmp_path, steps, {"receipt.xsl": RECEIPT})
    assert 'bank="O\'Neil &amp; Co" batch="7.50"' in run(route, VOUCHER.encode()).body


def test_a_text_output_method_gives_a_text_body(tmp_path):
    route = route_with(tmp_path, "  - xslt: csv.xsl\n", {"csv.xsl": CSV})
    out = run(route, VOUCHER)
    assert (out.body, out.content_type) == ("V-7;50000.10", TEXT)


def test_a_missing_stylesheet_is_reported_at_its_line(tmp_path):
    route, errors = build(tmp_path, "  - xslt: {file: transformers/nope.xsl}\n")
    assert route is None
    assert [(e.path, e.line, e.col) for e in errors] == [("r.yaml", 4, 18)]
    assert "the file 'transformers/nope.xsl' does not exist" in errors[0].message


def test_a_stylesheet_that_is_not_xslt_is_refused_at_build_time(tmp_path):
    _, errors = build(tmp_path, "  - xslt: bad.xsl\n", {"bad.xsl": OPEN + "><xsl:template match='/'>"})
    assert errors[0].line == 4
    assert errors[0].message.startswith("bad.xsl")


def test_a_stylesheet_cannot_read_files_with_document(tmp_path):
    route = route_with(tmp_path, "  - xslt: steal.xsl\n", {"steal.xsl": READS_A_FILE})
    error = failure(route, VOUCHER)
    assert "denied" in error.message


def test_a_stylesheet_cannot_write_files(tmp_path):
    target = tmp_path / "written.txt"
    route = route_with(tmp_path, "  - xslt: write.xsl\n", {"write.xsl": WRITES_A_FILE.replace("{TARGET}", str(target))})
    error = failure(route, VOUCHER)
    assert "denied" in error.message
    assert not target.exists()


@pytest.mark.parametrize("attack, what", [
    ("xalan_exec.xsl", "calls the extension function rt:getRuntime()"),
    ("xalan_write.xsl", "declares extension elements (redirect)"),
])
def test_xalan_attack_stylesheets_are_refused_at_build_time(tmp_path, testdata, attack, what):
    path = testdata / "xml-attacks" / attack
    route, errors = build(tmp_path, f"  - xslt: {path}\n")
    assert route is None
    assert len(errors) == 1 and errors[0].line == 4
    assert errors[0].message.startswith(f"{path}: the stylesheet cannot be used: XSLT refused: {attack} {what}")


def test_extension_elements_are_refused_at_build_time_even_from_exslt(tmp_path):
    _, errors = build(tmp_path, "  - xslt: {file: write.xsl}\n", {"write.xsl": EXSLT_WRITE})
    assert "declares extension elements (exsl)" in errors[0].message
    assert not (tmp_path / "written.txt").exists()


def test_exslt_functions_are_allowed(tmp_path):
    stylesheet = OPEN + """ xmlns:str="http://exslt.org/strings" exclude-result-prefixes="str">
      <xsl:template match="/voucher"><id><xsl:value-of select="str:padding(3, '0')"/></id></xsl:template>
    </xsl:stylesheet>"""
    route = route_with(tmp_path, "  - xslt: pad.xsl\n", {"pad.xsl": stylesheet})
    assert run(route, VOUCHER).body.endswith("<id>000</id>\n")


def test_xsl_message_terminate_is_a_transform_error(tmp_path):
    route = route_with(tmp_path, "  - xslt: refuse.xsl\n", {"refuse.xsl": REFUSES})
    assert "no total in this voucher" in failure(route, VOUCHER).message


def test_a_json_body_is_a_transform_error_that_says_to_convert_first(tmp_path):
    route = route_with(tmp_path, "  - xslt: receipt.xsl\n", {"receipt.xsl": RECEIPT})
    assert "json_to_xml" in failure(route, {"voucher": {}}, JSON).message


def test_malformed_xml_is_a_transform_error(tmp_path):
    route = route_with(tmp_path, "  - xslt: receipt.xsl\n", {"receipt.xsl": RECEIPT})
    failure(route, "<voucher><total>1</voucher>")
