"""Every file in transformers/ is loaded when a project is checked, so a broken sample never ships."""

from esb.transform.assets import check_transformers

SCHEMA = '{"type": "object", "properties": {"amount": {"type": "number"}}}'
XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="Voucher" type="xs:string"/>
</xs:schema>
"""
XSL = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><out/></xsl:template>
</xsl:stylesheet>
"""
FUNCTION = "def transform(body, headers):\n    return body\n"


def project(tmp_path, files: dict):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return tmp_path


def problems(tmp_path, files: dict) -> list[str]:
    return [str(e) for e in check_transformers(project(tmp_path, files))]


def test_a_project_without_a_transformers_folder_has_nothing_to_check(tmp_path):
    assert check_transformers(tmp_path) == []


def test_good_schemas_stylesheets_and_functions_pass(tmp_path):
    assert problems(tmp_path, {
        "transformers/schemas/claim.json": SCHEMA, "transformers/schemas/voucher.xsd": XSD,
        "transformers/xslt/receipt.xsl": XSL, "transformers/xslt/copy.xslt": XSL,
        "transformers/functions/tax.py": FUNCTION, "transformers/README.md": "not checked",
        "transformers/maps/claim.yaml": "output:\n  id: claim_id\n  total: \"sum(items[].amount)\"\n",
    }) == []


def test_json_that_does_not_parse_is_reported_at_its_line_and_column(tmp_path):
    found = problems(tmp_path, {"transformers/schemas/x.json": '{\n  "type": "object",\n    "required": [1,]\n}'})
    assert found == ["transformers/schemas/x.json:3:20: the file is not valid JSON (Expecting value) "
                     "— fix the JSON syntax: double quotes, commas, brackets"]


def test_json_that_is_not_a_valid_json_schema_says_where(tmp_path):
    found = problems(tmp_path, {"transformers/schemas/x.json": '{"properties": {"amount": {"type": "numbr"}}}'})
    assert found == ["transformers/schemas/x.json: the JSON Schema is invalid at properties.amount.type: 'numbr' "
                     "is not a JSON type — use one of: array, boolean, integer, null, number, object, string"]


def test_other_json_schema_mistakes_point_to_the_draft(tmp_path):
    found = problems(tmp_path, {"transformers/schemas/x.json": '{"required": "amount"}'})
    assert found == ["transformers/schemas/x.json: the JSON Schema is invalid at required: 'amount' is not of "
                     "type 'array' — see https://json-schema.org/draft/2020-12/schema"]


def test_a_json_schema_with_an_unknown_draft_is_reported(tmp_path):
    found = problems(tmp_path, {"transformers/x.json": '{"$schema": "http://json-schema.org/draft-99/schema#"}'})
    assert "is not a JSON Schema draft esb knows" in found[0]


def test_a_broken_xsd_is_reported_with_its_line(tmp_path):
    broken = XSD.replace('type="xs:string"', 'type="xs:strin"')
    found = problems(tmp_path, {"transformers/schemas/voucher.xsd": broken})
    assert len(found) == 1
    assert found[0].startswith("transformers/schemas/voucher.xsd:2: the XML Schema cannot be used: ")
    assert "'strin' does not resolve to a(n) type definition" in found[0]


def test_an_xsd_that_imports_from_the_network_is_refused(tmp_path, testdata):
    found = problems(tmp_path, {"transformers/schemas/include.xsd": (testdata / "xml-attacks" / "schema-include.xsd")
                                .read_text()})
    assert len(found) == 1
    assert "http://www.w3.org/2001/xml.xsd" in found[0]


def test_a_stylesheet_that_is_not_well_formed_is_reported_with_its_line_and_column(tmp_path):
    found = problems(tmp_path, {"transformers/receipt.xsl": XSL.replace("<out/>", "<out>")})
    assert found[0].startswith("transformers/receipt.xsl:3:18: the stylesheet cannot be used: XML syntax error: ")
    assert "XML syntax error" in found[0]
    assert str(tmp_path) not in found[0]


def test_a_stylesheet_with_a_processor_extension_is_refused(tmp_path):
    xalan = XSL.replace('<xsl:stylesheet version="1.0"', '<xsl:stylesheet version="1.0" '
                        'xmlns:rt="http://xml.apache.org/xalan/java/java.lang.Runtime"') \
        .replace("<out/>", '<xsl:value-of select="rt:getRuntime()"/>')
    found = problems(tmp_path, {"transformers/exec.xsl": xalan})
    assert "calls the extension function rt:getRuntime()" in found[0]


def test_python_that_does_not_compile_is_reported_with_its_line_and_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').close()\ndef transform(body:\n    return body\n"
    found = problems(tmp_path, {"transformers/functions/tax.py": source})
    assert len(found) == 1
    assert found[0].startswith("transformers/functions/tax.py:2:")
    assert "the Python code does not compile" in found[0]
    assert not marker.exists()


def test_a_file_that_is_not_utf8_is_reported(tmp_path):
    found = problems(tmp_path, {"transformers/functions/tax.py": b"x = '\xff'\n"})
    assert found == ["transformers/functions/tax.py: the file is not UTF-8 (byte 5) — save it as UTF-8"]


def test_a_broken_mapping_is_reported_with_its_line(tmp_path):
    found = problems(tmp_path, {"transformers/maps/m.yaml": "fields:\n  a: [1, 2\n"})
    assert found and all(p.startswith("transformers/maps/m.yaml:") for p in found)


def test_every_broken_file_is_reported_in_one_pass_in_path_order(tmp_path):
    found = problems(tmp_path, {
        "transformers/b/x.json": "{", "transformers/a/y.py": "def (", "transformers/.hidden/z.json": "{",
        "transformers/a/ok.json": SCHEMA,
    })
    assert [p.split(":")[0] for p in found] == ["transformers/a/y.py", "transformers/b/x.json"]


def test_the_projects_own_transformers_all_load(project_root):
    assert [str(e) for e in check_transformers(project_root)] == []
