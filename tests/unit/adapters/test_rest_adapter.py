"""The REST adapter against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
import shutil
import socket
import ssl
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from esb.adapters import rest
from esb.adapters.base import open_adapter
from esb.adapters.rest import RestAdapter
from esb.adapters.spec import AdapterSpec
from esb.errors import ConfigError, PermanentError, ProcessingError, TransformError, TransientError
from esb.message import XML, Message
from esb.testing.http import StubHttpServer, StubResponse
from esb.transform import jsoncodec

TOKEN = "s3cr3t-token"
OPERATIONS = {
    "create_voucher": {"method": "POST", "path": "/vouchers"},
    "get_voucher": {"method": "GET", "path": "/vouchers/{voucher_no}"},
    "cancel_voucher": {"method": "DELETE", "path": "/vouchers/{voucher_no}"},
    "find_payment": {"method": "GET", "path": "/accounts/{debtor.iban}/payments/{message_id}",
                     "query": {"ref": "{ref}", "note": "{ref} & more"}},
    "archive": {"method": "PUT", "path": "/archive/{message_id}", "headers": {"X-Archive": "yes"}},
}
VOUCHER = {"voucher_no": "V-2024-0001", "total": Decimal("50000.10"), "lines": [{"amount": Decimal("0.10")}]}

AdapterFactory = Callable[..., RestAdapter]


@pytest.fixture
def make_adapter(http_stub: StubHttpServer) -> Iterator[AdapterFactory]:
    """Open REST adapters pointing at the stub (or at `base_url=`); all are closed afterwards."""
    http_stub.set_default(StubResponse(200, {"ok": True}))
    opened: list[RestAdapter] = []

    def make(root: Path = Path("."), operations: dict | None = None, **settings) -> RestAdapter:
        settings = {"base_url": http_stub.url, "timeout": "2s", **settings}
        spec = AdapterSpec("ledger-rest", "rest", "adapters/ledger-rest.yaml", settings, operations or OPERATIONS)
        adapter = open_adapter(spec, root)
        opened.append(adapter)
        return adapter

    yield make
    for adapter in opened:
        adapter.close()


def call(adapter: RestAdapter, operation: str, body=None, key: str = "claim-1:to-ledger", **message) -> Message:
    return adapter.call(operation, Message(VOUCHER if body is None else body, **message), idempotency_key=key)


# -- URLs --------------------------------------------------------------------------------------
def test_a_path_field_is_percent_encoded_as_one_segment(make_adapter, http_stub):
    call(make_adapter(), "get_voucher", {"voucher_no": "A/../B?x#y%z 票"})
    (request,) = http_stub.requests
    assert request.path == "/vouchers/A%2F..%2FB%3Fx%23y%25z%20%E7%A5%A8"
    assert request.query == ""


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_a_path_field_that_would_change_the_path_is_refused(make_adapter, http_stub, value):
    with pytest.raises(PermanentError, match="voucher_no"):
        call(make_adapter(), "cancel_voucher", {"voucher_no": value})
    assert http_stub.requests == []


def test_dotted_fields_and_the_message_id_fill_the_path_and_query_values_are_encoded(make_adapter, http_stub):
    body = {"debtor": {"iban": "DE89 3704/0044"}, "ref": "a&b=c/d é"}
    call(make_adapter(), "find_payment", body, message_id="m-1")
    (request,) = http_stub.requests
    assert request.path == "/accounts/DE89%203704%2F0044/payments/m-1"
    assert parse_qs(request.query) == {"ref": ["a&b=c/d é"], "note": ["a&b=c/d é & more"]}


def test_a_base_url_prefix_is_kept(make_adapter, http_stub):
    call(make_adapter(base_url=http_stub.url + "/api/v1/"), "get_voucher")
    assert http_stub.requests[0].path == "/api/v1/vouchers/V-2024-0001"


def test_a_missing_field_is_a_permanent_error_naming_the_field_and_the_operation(make_adapter, http_stub):
    with pytest.raises(PermanentError) as caught:
        call(make_adapter(), "find_payment", {"debtor": {}, "ref": "r"})
    assert "debtor.iban" in str(caught.value)
    assert "find_payment" in str(caught.value)
    assert http_stub.requests == []


def test_a_field_of_a_non_json_body_is_a_permanent_error(make_adapter):
    with pytest.raises(PermanentError, match="voucher_no"):
        call(make_adapter(), "get_voucher", "<Voucher/>", content_type=XML)


# -- bodies and headers ------------------------------------------------------------------------
def test_post_sends_the_json_body_with_amounts_digit_for_digit(make_adapter, http_stub):
    call(make_adapter(), "create_voucher")
    (request,) = http_stub.requests
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == b'{"voucher_no":"V-2024-0001","total":50000.10,"lines":[{"amount":0.10}]}'


def test_a_body_read_from_json_text_and_unchanged_is_sent_as_that_text(make_adapter, http_stub):
    text = b'{"voucher_no": "V-2024-0001", "total": 50000.10}'
    body, kept = jsoncodec.loads_keeping_text(text)
    call(make_adapter(), "create_voucher", body, json_text=kept)
    (request,) = http_stub.requests
    assert request.body == text and request.headers["Content-Type"] == "application/json"


def test_a_float_in_the_body_is_a_transform_error_and_nothing_is_sent(make_adapter, http_stub):
    with pytest.raises(TransformError, match="float"):
        call(make_adapter(), "create_voucher", {"total": 0.1})
    assert http_stub.requests == []


def test_put_sends_an_xml_body_as_it_is_with_its_content_type(make_adapter, http_stub):
    call(make_adapter(), "archive", "<Voucher no='1'>票</Voucher>", content_type=XML)
    (request,) = http_stub.requests
    assert request.headers["Content-Type"] == XML
    assert request.text == "<Voucher no='1'>票</Voucher>"


@pytest.mark.parametrize("operation", ["get_voucher", "cancel_voucher"])
def test_get_and_delete_send_no_body(make_adapter, http_stub, operation):
    call(make_adapter(), operation)
    (request,) = http_stub.requests
    assert request.body == b""
    assert "Content-Type" not in request.headers


def test_configured_headers_the_idempotency_key_and_the_message_id_are_sent(make_adapter, http_stub):
    adapter = make_adapter(headers={"Accept": "application/json", "X-Tenant": "cn-01"})
    call(adapter, "archive", message_id="m-7", key="claim-9:archive")
    headers = http_stub.requests[0].headers
    assert (headers["Accept"], headers["X-Tenant"], headers["X-Archive"]) == ("application/json", "cn-01", "yes")
    assert headers["Idempotency-Key"] == "claim-9:archive"
    assert headers["X-Message-Id"] == "m-7"


def test_the_idempotency_header_can_be_renamed_or_turned_off(make_adapter, http_stub):
    call(make_adapter(idempotency_header="X-Request-Id"), "create_voucher", key="k-1")
    call(make_adapter(idempotency_header=False), "create_voucher", key="k-2")
    renamed, off = (r.headers for r in http_stub.requests)
    assert renamed["X-Request-Id"] == "k-1" and "Idempotency-Key" not in renamed
    assert "Idempotency-Key" not in off and "k-2" not in off.values()


def test_an_idempotency_key_outside_printable_ascii_is_sent_percent_encoded(make_adapter, http_stub):
    call(make_adapter(), "create_voucher", key="报销-1\r\nX-Evil: 1")
    headers = http_stub.requests[0].headers
    assert headers["Idempotency-Key"] == "%E6%8A%A5%E9%94%80-1%0D%0AX-Evil:%201"
    assert "X-Evil" not in headers


# -- auth --------------------------------------------------------------------------------------
def test_bearer_auth_sends_the_token(make_adapter, http_stub):
    call(make_adapter(auth={"bearer": {"token": TOKEN}}), "create_voucher")
    assert http_stub.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_basic_auth_sends_user_and_password(make_adapter, http_stub):
    call(make_adapter(auth={"basic": {"username": "esb", "password": "pa:ss"}}), "create_voucher")
    scheme, encoded = http_stub.requests[0].headers["Authorization"].split(" ")
    assert (scheme, base64.b64decode(encoded)) == ("Basic", b"esb:pa:ss")


@pytest.mark.parametrize(("algorithm", "digest", "header"), [
    (None, hashlib.sha256, "X-Signature"),
    ("sha512", hashlib.sha512, "X-Ledger-Signature"),
])
def test_hmac_auth_signs_method_target_timestamp_and_body_hash(make_adapter, http_stub, algorithm, digest, header):
    config = {"key_id": "esb-prod", "secret": "hmac-s3cret",
              **({"algorithm": algorithm} if algorithm else {}), **({"header": header} if algorithm else {})}
    adapter = make_adapter(auth={"hmac": config})
    call(adapter, "create_voucher")
    call(adapter, "find_payment", {"debtor": {"iban": "DE/1"}, "ref": "r 1"}, message_id="m-1")
    for request in http_stub.requests:
        headers = request.headers
        assert headers["X-Key-Id"] == "esb-prod"
        assert abs(int(headers["X-Timestamp"]) - time.time()) < 60
        canonical = "\n".join([request.method, request.target, headers["X-Timestamp"],
                               hashlib.sha256(request.body).hexdigest()])
        assert headers[header] == hmac.new(b"hmac-s3cret", canonical.encode(), digest).hexdigest()
    assert http_stub.requests[1].target == "/accounts/DE%2F1/payments/m-1?ref=r+1&note=r+1+%26+more"


# -- responses ---------------------------------------------------------------------------------
def test_json_response_amounts_stay_decimal_and_the_message_keeps_its_id_and_headers(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 201, b'{"voucher_no": "V-1", "total": 50000.10, "count": 2}',
                      {"Content-Type": "application/json; charset=utf-8"})
    response = call(make_adapter(), "create_voucher", message_id="m-1", headers={"route": "r"})
    assert response.body == {"voucher_no": "V-1", "total": Decimal("50000.10"), "count": 2}
    assert isinstance(response.body["total"], Decimal)
    assert (response.message_id, dict(response.headers), response.content_type) == ("m-1", {"route": "r"},
                                                                                     "application/json")
    assert response.json_text == b'{"voucher_no": "V-1", "total": 50000.10, "count": 2}'  # sent on as it came


def test_a_204_response_has_no_body(make_adapter, http_stub):
    http_stub.enqueue("/vouchers/V-2024-0001", 204)
    assert call(make_adapter(), "cancel_voucher").body is None


def test_an_xml_response_is_text_with_the_xml_content_type(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 200, "<Receipt>票</Receipt>".encode(), {"Content-Type": "text/xml; charset=utf-8"})
    response = call(make_adapter(), "create_voucher")
    assert (response.body, response.content_type) == ("<Receipt>票</Receipt>", XML)


def test_an_invalid_json_response_is_a_transform_error(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 201, b'{"total": 1.0,', {"Content-Type": "application/json"})
    with pytest.raises(TransformError, match="not valid JSON"):
        call(make_adapter(), "create_voucher")


def test_a_4xx_is_permanent_with_the_status_and_at_most_200_characters_of_the_body(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 409, "duplicate voucher " + "x" * 1000)
    with pytest.raises(PermanentError) as caught:
        call(make_adapter(), "create_voucher")
    text = str(caught.value)
    assert text.startswith("ledger-rest.create_voucher (POST /vouchers): HTTP 409: duplicate voucher x")
    assert len(text.split("HTTP 409: ", 1)[1]) <= 200
    assert not isinstance(caught.value, TransientError)


def test_a_429_is_transient_with_retry_after_in_seconds(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 429, "slow down", {"Retry-After": "120"})
    with pytest.raises(TransientError) as caught:
        call(make_adapter(), "create_voucher")
    assert caught.value.retry_after == 120
    assert "HTTP 429" in str(caught.value)


def test_a_429_is_transient_with_retry_after_from_an_http_date(make_adapter, http_stub):
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=90)
    http_stub.enqueue("/vouchers", 429, "", {"Retry-After": email.utils.format_datetime(later, usegmt=True)})
    with pytest.raises(TransientError) as caught:
        call(make_adapter(), "create_voucher")
    assert 85 <= caught.value.retry_after <= 90


def test_a_5xx_is_transient_without_retry_after(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 500, "boom")
    with pytest.raises(TransientError) as caught:
        call(make_adapter(), "create_voucher")
    assert caught.value.retry_after is None


def test_proxy_variables_of_the_environment_are_not_used(make_adapter, http_stub, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{_free_port()}")
    call(make_adapter(), "create_voucher")
    assert [r.path for r in http_stub.requests] == ["/vouchers"]


def test_a_refused_connection_is_transient(make_adapter):
    with pytest.raises(TransientError, match="connection failed"):
        call(make_adapter(base_url=f"http://127.0.0.1:{_free_port()}"), "create_voucher")


# -- redirects ---------------------------------------------------------------------------------
def test_a_redirect_to_another_host_is_refused(make_adapter, http_stub):
    with StubHttpServer() as elsewhere:
        http_stub.enqueue("/vouchers", 307, b"", {"Location": elsewhere.url + "/vouchers"})
        with pytest.raises(PermanentError, match="another host"):
            call(make_adapter(), "create_voucher")
        assert elsewhere.requests == []


def test_a_same_host_redirect_is_followed_with_the_same_method_body_and_headers(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 308, b"", {"Location": "/v2/vouchers"})
    http_stub.enqueue("/v2/vouchers", 201, {"voucher_no": "V-9"})
    response = call(make_adapter(auth={"bearer": {"token": TOKEN}}), "create_voucher")
    assert response.body == {"voucher_no": "V-9"}
    first, second = http_stub.requests
    assert (second.method, second.body) == ("POST", first.body)
    assert second.headers["Authorization"] == f"Bearer {TOKEN}"
    assert second.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]


def test_a_303_after_a_post_fetches_the_result_with_get(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 303, b"", {"Location": http_stub.url + "/vouchers/V-9"})
    http_stub.enqueue("/vouchers/V-9", 200, {"voucher_no": "V-9"})
    assert call(make_adapter(), "create_voucher").body == {"voucher_no": "V-9"}
    assert [(r.method, r.body) for r in http_stub.requests][1] == ("GET", b"")


def test_more_than_three_redirects_are_refused(make_adapter, http_stub):
    http_stub.route("/vouchers", lambda request: StubResponse(302, b"", {"Location": "/vouchers"}))
    with pytest.raises(PermanentError, match="redirects"):
        call(make_adapter(), "create_voucher")
    assert len(http_stub.requests) == 4


def test_a_redirect_to_an_unreadable_location_is_refused(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 307, b"", {"Location": "http://127.0.0.1:notaport/vouchers"})
    with pytest.raises(PermanentError, match="invalid location"):
        call(make_adapter(), "create_voucher")


def test_a_redirect_path_with_unsafe_characters_is_sent_percent_encoded(make_adapter, http_stub):
    http_stub.enqueue("/vouchers", 303, b"", {"Location": "/vouchers/V 9?x=a b"})
    http_stub.enqueue("/vouchers/V%209", 200, {"voucher_no": "V-9"})
    assert call(make_adapter(), "create_voucher").body == {"voucher_no": "V-9"}
    assert http_stub.requests[1].target == "/vouchers/V%209?x=a%20b"


# -- limits ------------------------------------------------------------------------------------
def test_a_response_over_the_size_limit_is_permanent_and_the_next_call_works(make_adapter, http_stub, monkeypatch):
    monkeypatch.setattr(rest, "MAX_RESPONSE_BYTES", 64 * 1024)
    http_stub.enqueue("/vouchers", 200, b"x" * (256 * 1024), {"Content-Type": "application/octet-stream"})
    http_stub.enqueue("/vouchers", 201, {"voucher_no": "V-2"})
    adapter = make_adapter()
    with pytest.raises(PermanentError, match="larger than"):
        call(adapter, "create_voucher")
    assert call(adapter, "create_voucher").body == {"voucher_no": "V-2"}


# -- secrets -----------------------------------------------------------------------------------
SECRET_SETTINGS = {
    "bearer": {"auth": {"bearer": {"token": TOKEN}}},
    "basic": {"auth": {"basic": {"username": "esb", "password": TOKEN}}},
    "hmac": {"auth": {"hmac": {"key_id": "esb", "secret": TOKEN}}},
    "header": {"headers": {"X-Api-Key": TOKEN}},
    # the one rule of esb.loading.secrets, shared with `esb routes show` (issue 9 point 7)
    "subscription-key header": {"headers": {"Ocp-Apim-Subscription-Key": TOKEN}},
    "custom auth header": {"headers": {"X-Custom-Auth-Thing": TOKEN}},
}
ECHO = {"bearer": f"Bearer {TOKEN}", "basic": "Basic " + base64.b64encode(f"esb:{TOKEN}".encode()).decode(),
        "hmac": TOKEN, "header": TOKEN, "subscription-key header": TOKEN, "custom auth header": TOKEN}


def _failures(server: StubHttpServer, echo: str) -> dict[str, tuple[str, dict, dict]]:
    """Every failure kind: (operation, body, server script) -> the adapter must raise."""
    return {
        "4xx echoing the credential": ("create_voucher", VOUCHER, {"status": 401, "body": f"bad credential {echo}"}),
        "5xx echoing the credential": ("create_voucher", VOUCHER, {"status": 503, "body": f"upstream said {echo}"}),
        "invalid json": ("create_voucher", VOUCHER, {"status": 200, "body": f"{{{echo}".encode(),
                                                     "headers": {"Content-Type": "application/json"}}),
        "timeout": ("create_voucher", VOUCHER, {"status": 200, "delay": 1.0}),
        "redirect elsewhere": ("create_voucher", VOUCHER, {
            "status": 302, "headers": {"Location": f"http://user:{TOKEN}@localhost:1/{echo}"}}),
        "missing field": ("get_voucher", {}, {}),
    }


@pytest.mark.parametrize("secret_kind", sorted(SECRET_SETTINGS))
def test_secrets_never_appear_in_any_error(make_adapter, http_stub, secret_kind):
    adapter = make_adapter(timeout="300ms", **SECRET_SETTINGS[secret_kind])
    errors: list[ProcessingError] = []
    for name, (operation, body, script) in _failures(http_stub, ECHO[secret_kind]).items():
        if script:
            http_stub.enqueue("/vouchers", **script)
        with pytest.raises(ProcessingError) as caught:
            call(adapter, operation, body)
        errors.append(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__, name
    refused = make_adapter(base_url=f"http://127.0.0.1:{_free_port()}", **SECRET_SETTINGS[secret_kind])
    with pytest.raises(TransientError) as caught:
        call(refused, "create_voucher")
    errors.append(caught.value)
    for error in errors:
        shown = "".join(traceback.format_exception(error)) + repr(error)
        assert TOKEN not in shown
        assert "ledger-rest." in str(error) and " (" in str(error)  # names adapter, operation, method, path


def test_a_credential_in_base_url_is_refused_without_echoing_it(http_stub):
    spec = AdapterSpec("ledger-rest", "rest", "adapters/ledger-rest.yaml",
                       {"base_url": f"http://esb:{TOKEN}@127.0.0.1:1"}, OPERATIONS)
    with pytest.raises(ConfigError) as caught:
        open_adapter(spec, Path("."))
    assert TOKEN not in str(caught.value)
    assert "auth" in str(caught.value)


# -- configuration and TLS ---------------------------------------------------------------------
def test_a_malformed_path_template_is_a_config_error(make_adapter):
    with pytest.raises(ConfigError, match="malformed template"):
        make_adapter(operations={"get": {"method": "GET", "path": "/vouchers/{voucher_no"}})


def test_an_unknown_adapter_kind_is_a_config_error_naming_the_file():
    spec = AdapterSpec("x", "ftp", "adapters/x.yaml", {}, {"op": {}})
    with pytest.raises(ConfigError, match="adapters/x.yaml: .*no such adapter kind: ftp"):
        open_adapter(spec, Path("."))


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[StubHttpServer, Path]]:
    """An HTTPS stub with a self-signed certificate for IP 127.0.0.1 only; (server, certificate)."""
    cert, key = _self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with StubHttpServer(ssl_context=context) as server:
        server.route("/vouchers", lambda request: StubResponse(201, {"voucher_no": "V-1"}))
        yield server, cert


def test_tls_is_verified_and_ca_file_trusts_a_private_ca(make_adapter, tls_server, tmp_path):
    server, cert = tls_server
    with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
        call(make_adapter(base_url=server.url), "create_voucher")
    trusted = make_adapter(root=tmp_path, base_url=server.url, ca_file=cert.name)
    assert call(trusted, "create_voucher").body == {"voucher_no": "V-1"}


def test_a_trusted_certificate_for_another_host_name_is_refused(make_adapter, tls_server, tmp_path):
    server, cert = tls_server
    adapter = make_adapter(root=tmp_path, base_url=f"https://localhost:{server.port}", ca_file=cert.name)
    with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED|match"):
        call(adapter, "create_voucher")
    assert server.requests == []


def test_verify_tls_false_accepts_an_untrusted_certificate_without_a_warning_per_call(make_adapter, tls_server):
    server, _ = tls_server
    adapter = make_adapter(base_url=server.url, verify_tls=False)
    assert call(adapter, "create_voucher").body == {"voucher_no": "V-1"}  # warnings are errors here


def test_a_missing_ca_file_is_a_config_error(make_adapter, tmp_path):
    with pytest.raises(ConfigError, match="ca_file"):
        make_adapter(root=tmp_path, ca_file="config/ledger-ca.pem")


def test_calling_a_closed_adapter_is_transient(make_adapter):
    adapter = make_adapter()
    adapter.close()
    with pytest.raises(TransientError, match="closed"):
        call(adapter, "create_voucher")


# -- helpers -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, made with the openssl command."""
    cert, key = folder / "ledger-ca.pem", folder / "ledger-key.pem"
    if shutil.which("openssl") is None:
        pytest.fail("the TLS test needs the `openssl` command (apt-get install openssl)", pytrace=False)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key
