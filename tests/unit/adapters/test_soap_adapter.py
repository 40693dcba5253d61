"""The SOAP adapter against real SOAP servers on loopback: spyne stand-ins and raw HTTP replies."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from esb.adapters.base import open_adapter
from esb.adapters.soap import SoapAdapter
from esb.adapters.spec import AdapterSpec, load_adapter
from esb.errors import ConfigError, PermanentError, TransientError, ValidationError
from esb.loading.yamlsource import load_yaml
from esb.message import XML, Message
from esb.testing.http import StubResponse
from esb.testing.soap import WSSE_NS, BlzServer, VoucherArchiveServer
from esb.transform.safexml import parse_xml, read_xml_file

# spyne 2.14 (the stand-in servers) warns on import under Python 3.11: its vendored six 1.14
# importer lacks find_spec (ImportWarning) and it imports the deprecated `cgi` module.
# esb.testing.soap teaches that importer find_spec, so nothing warns after the import.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:_SixMetaPathImporter\.(find_spec|exec_module)\(\) not found:ImportWarning"),
    pytest.mark.filterwarnings(r"ignore:'cgi' is deprecated:DeprecationWarning:spyne\."),
]

USER = "esb"
PASSWORD = "pa<ss&w0rd-9f3k"  # XML-special characters: escaped in the envelope, masked in both forms
ARCHIVE_NS = "http://oa.example.cn/ws/voucher-archive"
VOUCHER = {"voucher_no": "V-2024-0001", "amount": Decimal("12345678901234.56"), "currency": "CNY",
           "claim_id": "EXP-42"}
TIMEOUT = 0.3

AdapterFactory = Callable[..., SoapAdapter]


@pytest.fixture
def archive() -> Iterator[VoucherArchiveServer]:
    server = VoucherArchiveServer(users={USER: PASSWORD}).start()
    yield server
    server.stop()


@pytest.fixture
def blz() -> Iterator[BlzServer]:
    server = BlzServer().start()
    yield server
    server.stop()


@pytest.fixture
def oa_soap(project_root: Path, archive: VoucherArchiveServer) -> Iterator[SoapAdapter]:
    """The project's own adapters/oa-soap.yaml, pointed at the stand-in archive through its ${VARs}."""
    env = {"OA_SOAP_URL": archive.url, "OA_SOAP_USER": USER, "OA_SOAP_PASSWORD": PASSWORD}
    spec, errors = load_adapter(load_yaml(project_root / "adapters" / "oa-soap.yaml", "adapters/oa-soap.yaml"),
                                project_root, env)
    assert errors == []
    adapter = open_adapter(spec, project_root)
    yield adapter
    adapter.close()


@pytest.fixture
def make_adapter(project_root: Path) -> Iterator[AdapterFactory]:
    """Open SOAP adapters on the voucher archive WSDL (or another); all are closed afterwards."""
    opened: list[SoapAdapter] = []

    def make(root: Path = project_root, operations: dict | None = None, **settings) -> SoapAdapter:
        settings = {"wsdl": "adapters/wsdl/voucher-archive.wsdl", "timeout": "1s", **settings}
        operations = operations or {"ArchiveVoucher": {"operation": "ArchiveVoucher"},
                                    "CancelArchive": {"operation": "CancelArchive"}}
        adapter = open_adapter(AdapterSpec("oa-soap", "soap", "adapters/oa-soap.yaml", settings, operations), root)
        opened.append(adapter)
        return adapter

    yield make
    for adapter in opened:
        adapter.close()


@pytest.fixture
def blz_adapter(make_adapter: AdapterFactory, testdata: Path, blz: BlzServer) -> Callable[..., SoapAdapter]:
    """BLZService from the shared test data, read in place (an absolute wsdl path outside the project)."""
    def make(port: str = "BLZServiceSOAP11port_http", address: str | None = None, **settings) -> SoapAdapter:
        return make_adapter(wsdl=str(testdata / "wsdl" / "BLZService.wsdl"), service="BLZService", port=port,
                            address=address or (blz.url12 if "SOAP12" in port else blz.url),
                            operations={"get_bank": {"operation": "getBank"}}, **settings)
    return make


def call(adapter: SoapAdapter, operation: str = "ArchiveVoucher", body=None, key: str = "EXP-42:archive-voucher",
         **message) -> Message:
    return adapter.call(operation, Message(VOUCHER if body is None else body, **message), idempotency_key=key)


def client_logs(caplog) -> str:
    """What the process logged on the adapter's side: the stand-in server's own logs (spyne) are the
    far side's, which is told the password by design."""
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith("spyne"))


def wsse(adapter_password: str = PASSWORD) -> dict:
    return {"username": USER, "password": adapter_password}


# -- success -----------------------------------------------------------------------------------
def test_the_sample_adapter_archives_a_voucher_with_the_amount_exact(oa_soap, archive):
    response = call(oa_soap)
    archived = archive.archives["V-2024-0001"]
    assert response.body == {"archive_id": archived["archive_id"]}
    assert archived["amount"] == Decimal("12345678901234.56")
    assert str(archived["amount"]) == "12345678901234.56"
    assert b"<ns0:amount>12345678901234.56</ns0:amount>" in archive.requests[0].body


def test_a_response_keeps_the_message_id_and_headers(oa_soap):
    message = Message(VOUCHER, headers={"tenant": "cn-01"})
    response = oa_soap.call("ArchiveVoucher", message, idempotency_key="k")
    assert response.message_id == message.message_id
    assert dict(response.headers) == {"tenant": "cn-01"}
    assert response.is_json


def test_an_xml_body_sends_the_children_of_its_root_as_the_parameters(oa_soap, archive):
    receipt = (f'<VoucherReceipt xmlns="{ARCHIVE_NS}"><voucher_no>V-7</voucher_no><amount>0.10</amount>'
               '<currency>EUR</currency><claim_id>EXP-7</claim_id></VoucherReceipt>')
    response = call(oa_soap, body=receipt, content_type=XML)
    assert response.body["archive_id"].startswith("ARC-")
    assert archive.archives["V-7"]["amount"] == Decimal("0.10")
    assert archive.archives["V-7"]["claim_id"] == "EXP-7"


def test_fields_the_operation_does_not_declare_are_left_out(oa_soap, archive):
    call(oa_soap, body={**VOUCHER, "total": Decimal("1"), "receipt": {"voucher_id": 7}})
    assert b"total" not in archive.requests[0].body
    assert b"receipt" not in archive.requests[0].body


def test_compensation_is_one_more_operation_call_with_the_body_the_step_returned(oa_soap, archive):
    archived = call(oa_soap)
    undone = oa_soap.call("CancelArchive", archived.with_body({**VOUCHER, **archived.body}),
                          idempotency_key="EXP-42:archive-voucher:compensate")
    assert undone.body == {"cancelled": True}
    assert archive.archives["V-2024-0001"]["cancelled"] is True


def test_the_idempotency_key_and_message_id_travel_as_http_headers(oa_soap, archive):
    message = Message(VOUCHER)
    oa_soap.call("ArchiveVoucher", message, idempotency_key="EXP-42:archive-voucher 票")
    (request,) = archive.requests
    assert request.headers["Idempotency-Key"] == "EXP-42:archive-voucher%20%E7%A5%A8"
    assert request.headers["X-Message-Id"] == message.message_id


def test_the_wsdl_is_read_from_the_project_and_never_fetched(oa_soap, archive):
    call(oa_soap)
    assert [(r.method, r.query) for r in archive.requests] == [("POST", "")]


def test_a_bank_is_looked_up_in_the_shared_blz_service(blz_adapter):
    response = blz_adapter().call("get_bank", Message({"blz": "37050198"}), idempotency_key="k")
    assert response.body == {"details": {"bezeichnung": "Sparkasse KölnBonn", "bic": "COLSDE33XXX",
                                         "ort": "Köln", "plz": "50667"}}


def test_the_blz_service_answers_over_soap_1_2_too(blz_adapter):
    response = blz_adapter("BLZServiceSOAP12port_http").call("get_bank", Message({"blz": "37050198"}),
                                                              idempotency_key="k")
    assert response.body["details"]["bic"] == "COLSDE33XXX"


def test_the_shared_get_bank_request_body_is_sent_as_an_xml_message(blz_adapter, blz, testdata):
    envelope = read_xml_file(testdata / "wsdl" / "getBank.xml")
    body = etree.tostring(envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0], encoding="unicode")
    with pytest.raises(PermanentError, match="no bank has the bank code 66762332"):
        blz_adapter().call("get_bank", Message(body, XML), idempotency_key="k")
    sent = parse_xml(blz.requests[0].body)
    assert sent.findtext(".//{http://thomas-bayer.com/blz/}blz") == "66762332"


def test_the_shared_invalid_get_bank_request_is_refused_before_sending(blz_adapter, blz, testdata):
    envelope = read_xml_file(testdata / "wsdl" / "getBankInvalid.xml")
    body = etree.tostring(envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0], encoding="unicode")
    with pytest.raises(ValidationError, match="does not fit the WSDL operation"):
        blz_adapter().call("get_bank", Message(body, XML), idempotency_key="k")
    assert blz.requests == []


def test_a_float_in_a_response_arrives_as_decimal(make_adapter, http_stub, testdata):
    reply = ('<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
             '<soap:Body><q:TradePrice xmlns:q="http://example.com/stockquote.xsd"><price>1234.125</price>'
             '</q:TradePrice></soap:Body></soap:Envelope>')
    http_stub.enqueue("/quotes", 200, reply, {"Content-Type": "text/xml; charset=utf-8"})
    adapter = make_adapter(wsdl=str(testdata / "wsdl" / "soap.wsdl"), address=http_stub.url + "/quotes",
                           operations={"quote": {"operation": "GetLastTradePrice"}})
    response = adapter.call("quote", Message({"tickerSymbol": "ACME"}), idempotency_key="k")
    assert response.body == {"price": Decimal("1234.125")}
    assert type(response.body["price"]) is Decimal


# -- faults ------------------------------------------------------------------------------------
def test_a_client_fault_is_permanent_and_carries_faultcode_and_faultstring(oa_soap):
    with pytest.raises(PermanentError) as caught:
        call(oa_soap, "CancelArchive", {"voucher_no": "V-404"})
    assert not isinstance(caught.value, TransientError)
    assert "Client.UnknownVoucher" in str(caught.value)
    assert "no archive of voucher V-404" in str(caught.value)
    assert str(caught.value).startswith("oa-soap.CancelArchive (CancelArchive): SOAP fault ")


def test_an_unknown_bank_code_is_a_client_fault(blz_adapter):
    with pytest.raises(PermanentError, match=r"Client\.UnknownBLZ: no bank has the bank code 12345678"):
        blz_adapter().call("get_bank", Message({"blz": "12345678"}), idempotency_key="k")


def test_a_soap_1_2_sender_fault_is_permanent(blz_adapter):
    with pytest.raises(PermanentError, match="Sender: no bank has the bank code 1"):
        blz_adapter("BLZServiceSOAP12port_http").call("get_bank", Message({"blz": "1"}), idempotency_key="k")


def test_a_soap_1_2_receiver_fault_is_transient(blz_adapter, blz):
    blz.fail_next("Server", "the bank directory is being reloaded")
    with pytest.raises(TransientError, match="Receiver: the bank directory is being reloaded"):
        blz_adapter("BLZServiceSOAP12port_http").call("get_bank", Message({"blz": "37050198"}), idempotency_key="k")


def test_a_server_fault_is_transient_and_the_next_call_succeeds(oa_soap, archive):
    archive.fail_next("Server", "the archive database is down")
    with pytest.raises(TransientError, match="Server: the archive database is down"):
        call(oa_soap)
    assert call(oa_soap).body == {"archive_id": archive.archives["V-2024-0001"]["archive_id"]}
    assert len(archive.archives) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_an_http_error_without_a_fault_is_transient(make_adapter, http_stub, status):
    http_stub.enqueue("/ws", status, "<html>upstream unavailable</html>", {"Content-Type": "text/html"})
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        call(make_adapter(address=http_stub.url + "/ws"))


@pytest.mark.parametrize("status", [400, 401, 404])
def test_an_http_4xx_without_a_fault_is_permanent(make_adapter, http_stub, status):
    http_stub.enqueue("/ws", status, "<html>no</html>", {"Content-Type": "text/html"})
    with pytest.raises(PermanentError, match=f"HTTP {status}") as caught:
        call(make_adapter(address=http_stub.url + "/ws"))
    assert not isinstance(caught.value, TransientError)


def test_a_redirect_is_not_followed(make_adapter, http_stub):
    http_stub.enqueue("/ws", 302, b"", {"Location": "http://127.0.0.1:9/elsewhere"})
    with pytest.raises(PermanentError, match="HTTP 302"):
        call(make_adapter(address=http_stub.url + "/ws"))
    assert [r.path for r in http_stub.requests] == ["/ws"]


# -- hostile and broken responses --------------------------------------------------------------
HOSTILE = {
    "billion laughs": ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "EXPANDED-A">'
                       '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                       '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
                       f'<t:ArchiveVoucherResponse xmlns:t="{ARCHIVE_NS}"><t:archive_id>&c;</t:archive_id>'
                       '</t:ArchiveVoucherResponse></soap:Body></soap:Envelope>'),
    "external entity": ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
                        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
                        f'<t:ArchiveVoucherResponse xmlns:t="{ARCHIVE_NS}"><t:archive_id>&x;</t:archive_id>'
                        '</t:ArchiveVoucherResponse></soap:Body></soap:Envelope>'),
    "doctype only": ('<?xml version="1.0"?><!DOCTYPE soap:Envelope SYSTEM "http://127.0.0.1:9/evil.dtd">'
                     '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/>'
                     '</soap:Envelope>'),
}


@pytest.mark.parametrize("status", [200, 500])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_response_with_a_doctype_or_entities_is_refused_and_nothing_is_expanded(make_adapter, http_stub, name,
                                                                                  status):
    http_stub.enqueue("/ws", status, HOSTILE[name], {"Content-Type": "text/xml"})
    with pytest.raises(PermanentError, match="hostile or malformed SOAP response") as caught:
        call(make_adapter(address=http_stub.url + "/ws"))
    assert not isinstance(caught.value, TransientError)
    assert "EXPANDED" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("reply", [
    "<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body>",   # cut short
    "this is not XML",
    "<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'><soap:Body><Unexpected/></soap:Body>"
    "</soap:Envelope>",
])
def test_a_malformed_response_is_permanent(make_adapter, http_stub, reply):
    http_stub.enqueue("/ws", 200, reply, {"Content-Type": "text/xml"})
    with pytest.raises(PermanentError, match="hostile or malformed SOAP response") as caught:
        call(make_adapter(address=http_stub.url + "/ws"))
    assert not isinstance(caught.value, TransientError)


# -- timeouts and connections ------------------------------------------------------------------
def test_a_response_slower_than_the_timeout_is_transient_soon_after_it(make_adapter, archive):
    archive.delay = TIMEOUT * 5
    adapter = make_adapter(address=archive.url, timeout="300ms", wsse=wsse())
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out after 0.3s"):
        call(adapter)
    assert time.monotonic() - started < TIMEOUT + 1.0


def test_a_raw_http_reply_slower_than_the_timeout_is_transient(make_adapter, http_stub):
    http_stub.route("/ws", lambda request: StubResponse(200, b"", delay=TIMEOUT * 5))
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        call(make_adapter(address=http_stub.url + "/ws", timeout="300ms"))
    assert time.monotonic() - started < TIMEOUT + 1.0


def test_a_refused_connection_is_transient(make_adapter, archive):
    address = archive.url
    archive.stop()
    with pytest.raises(TransientError, match="connection failed"):
        call(make_adapter(address=address, wsse=wsse()))


# -- WS-Security and secrets -------------------------------------------------------------------
def test_the_wsse_username_token_is_sent_and_the_password_never_logged(oa_soap, archive, caplog):
    caplog.set_level(logging.DEBUG, logger="zeep")
    call(oa_soap)
    token = parse_xml(archive.requests[0].body).find(f".//{{{WSSE_NS}}}UsernameToken")
    assert token.findtext(f"{{{WSSE_NS}}}Username") == USER
    assert token.findtext(f"{{{WSSE_NS}}}Password") == PASSWORD  # the archive checked it, too
    logged = client_logs(caplog)
    assert "<wsse:Username>esb</wsse:Username>" in logged  # zeep did log the envelope ...
    assert "pa&lt;ss&amp;w0rd" not in logged and PASSWORD not in logged  # ... without the password
    assert "***</wsse:Password>" in logged


def test_a_wrong_password_is_a_client_fault_that_does_not_show_it(make_adapter, archive, caplog):
    caplog.set_level(logging.DEBUG, logger="zeep")
    adapter = make_adapter(address=archive.url, wsse=wsse("wrong-Secret-77"))
    with pytest.raises(PermanentError, match="Client.Authentication") as caught:
        call(adapter)
    assert "wrong-Secret-77" not in str(caught.value)
    assert "wrong-Secret-77" not in client_logs(caplog)


def test_a_fault_that_echoes_the_password_is_masked(oa_soap, archive, caplog):
    caplog.set_level(logging.DEBUG, logger="zeep")
    archive.fail_next("Client.Rejected", f"password {PASSWORD} is not allowed here")
    with pytest.raises(PermanentError) as caught:
        call(oa_soap)
    assert PASSWORD not in str(caught.value)
    assert "password *** is not allowed here" in str(caught.value)
    logged = client_logs(caplog)
    assert "password *** is not allowed here" in logged  # zeep logged the reply ...
    assert PASSWORD not in logged and "pa&lt;ss&amp;w0rd" not in logged  # ... masked


def test_the_adapter_shows_no_password_in_its_repr(oa_soap):
    assert PASSWORD not in repr(oa_soap)


# -- configuration and requests that cannot be made --------------------------------------------
def test_an_unknown_operation_is_a_permanent_error_naming_it(oa_soap):
    with pytest.raises(PermanentError, match="no operation 'ArchiveVoucherz'"):
        call(oa_soap, "ArchiveVoucherz")


def test_a_wsdl_operation_that_does_not_exist_is_a_config_error(make_adapter, archive):
    with pytest.raises(ConfigError, match="Did you mean 'ArchiveVoucher'"):
        make_adapter(address=archive.url, operations={"archive": {"operation": "ArchiveVouchr"}})


def test_a_service_with_several_soap_ports_needs_one_named(make_adapter, testdata):
    with pytest.raises(ConfigError, match="2 SOAP ports") as caught:
        make_adapter(wsdl=str(testdata / "wsdl" / "BLZService.wsdl"), operations={"b": {"operation": "getBank"}})
    assert "BLZServiceSOAP11port_http" in str(caught.value)


def test_an_http_binding_port_is_not_a_soap_port(make_adapter, testdata):
    with pytest.raises(ConfigError, match="no SOAP port 'BLZServiceHttpport'"):
        make_adapter(wsdl=str(testdata / "wsdl" / "BLZService.wsdl"), port="BLZServiceHttpport",
                     operations={"b": {"operation": "getBank"}})


def test_a_wsdl_importing_a_remote_schema_is_refused_without_fetching_it(make_adapter, tmp_path, http_stub):
    wsdl = _wsdl_importing(tmp_path, http_stub.url + "/types.xsd")
    with pytest.raises(ConfigError, match="types.xsd"):
        make_adapter(root=tmp_path, wsdl=wsdl.name)
    assert http_stub.requests == []


def test_a_wsdl_importing_a_file_outside_the_project_is_refused(make_adapter, tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "outside.xsd").write_text('<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema"/>')
    wsdl = _wsdl_importing(tmp_path / "project", "../outside.xsd")
    with pytest.raises(ConfigError, match="not a local file under the project root"):
        make_adapter(root=tmp_path / "project", wsdl=wsdl.name)


def test_a_wsdl_with_a_doctype_is_refused(make_adapter, tmp_path, project_root):
    text = (project_root / "adapters" / "wsdl" / "voucher-archive.wsdl").read_text(encoding="utf-8")
    hostile = text.replace("<wsdl:definitions", '<!DOCTYPE d [<!ENTITY x "y">]>\n<wsdl:definitions', 1)
    (tmp_path / "hostile.wsdl").write_text(hostile, encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        make_adapter(root=tmp_path, wsdl="hostile.wsdl")


def test_credentials_in_the_address_are_refused(make_adapter):
    with pytest.raises(ConfigError, match="user name or password in its address") as caught:
        make_adapter(address="http://esb:hunter2@127.0.0.1:9/ws")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("body", [["a", "list"], "text", Decimal("1")])
def test_a_json_body_that_is_not_an_object_is_refused(oa_soap, archive, body):
    with pytest.raises(ValidationError, match="not an object"):
        call(oa_soap, body=body)
    assert archive.requests == []


def test_a_body_missing_a_required_parameter_is_refused_before_sending(oa_soap, archive):
    with pytest.raises(ValidationError, match="amount"):
        call(oa_soap, body={"voucher_no": "V-1", "currency": "CNY", "claim_id": "EXP-1"})
    assert archive.requests == []


def test_an_xml_body_with_a_doctype_is_refused_before_sending(oa_soap, archive):
    receipt = f'<!DOCTYPE r [<!ENTITY x "y">]><VoucherReceipt xmlns="{ARCHIVE_NS}"/>'
    with pytest.raises(PermanentError, match="DTD"):
        call(oa_soap, body=receipt, content_type=XML)
    assert archive.requests == []


def test_a_closed_adapter_can_be_closed_again(oa_soap):
    oa_soap.close()
    oa_soap.close()


def _wsdl_importing(folder: Path, location: str) -> Path:
    wsdl = folder / "importing.wsdl"
    wsdl.write_text(f"""<?xml version="1.0"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
                  targetNamespace="urn:t">
  <wsdl:types>
    <xsd:schema targetNamespace="urn:t">
      <xsd:import namespace="urn:types" schemaLocation="{location}"/>
    </xsd:schema>
  </wsdl:types>
</wsdl:definitions>
""", encoding="utf-8")
    return wsdl
