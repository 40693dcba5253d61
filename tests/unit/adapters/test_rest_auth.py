"""REST auth that is fetched or computed: OAuth2 and vendor tokens, request signatures — on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import urllib3

from esb.adapters.base import open_adapter
from esb.adapters.rest import RestAdapter
from esb.adapters.spec import AdapterSpec, load_adapter
from esb.errors import ConfigError, PermanentError, TransientError
from esb.loading.project import load_project
from esb.loading.yamlsource import load_yaml
from esb.message import Message
from esb.routes.testing import run_route_tests
from esb.testing.http import RecordedRequest, StubHttpServer, StubResponse

ROOT = Path(__file__).resolve().parents[3]
CLIENT_SECRET = "cl1ent-s3cret-value"
SIGNING_KEY = "sign1ng-k3y-value"
LOGIN_PASSWORD = "l0gin-passw0rd"
OPERATIONS = {"create_voucher": {"method": "POST", "path": "/vouchers"},
              "find": {"method": "GET", "path": "/vouchers", "query": {"b": "2", "a": "{no}", "c": "x y"}}}
VOUCHER = {"no": "V-1", "total": "10.00"}


@pytest.fixture
def token_stub() -> Iterator[StubHttpServer]:
    """The token endpoint: another host (port) than the API."""
    server = StubHttpServer().start()
    yield server
    server.stop()


@pytest.fixture
def make_adapter(http_stub: StubHttpServer) -> Iterator[Callable[..., RestAdapter]]:
    opened: list[RestAdapter] = []

    def make(auth: dict, **settings) -> RestAdapter:
        settings = {"base_url": http_stub.url, "timeout": "2s", "auth": auth, **settings}
        adapter = open_adapter(AdapterSpec("erp", "rest", "adapters/erp.yaml", settings, OPERATIONS,
                                           secrets=frozenset({CLIENT_SECRET, SIGNING_KEY, LOGIN_PASSWORD})), Path("."))
        opened.append(adapter)
        return adapter

    yield make
    for adapter in opened:
        adapter.close()


def call(adapter: RestAdapter, operation: str = "create_voucher", body=None) -> Message:
    return adapter.call(operation, Message(VOUCHER if body is None else body), idempotency_key="k-1")


def oauth2(token_stub: StubHttpServer, **extra) -> dict:
    return {"oauth2": {"url": f"{token_stub.url}/oauth2/token", "client_id": "esb-client",
                       "client_secret": CLIENT_SECRET, "scopes": ["vouchers.write", "vouchers.read"], **extra}}


def issuing(tokens: list[str], expires_in: int = 3600, delay: float = 0.0):
    """A token endpoint handler answering each request with the next of `tokens`."""
    left = iter(tokens)

    def handler(request: RecordedRequest) -> StubResponse:
        return StubResponse(200, {"access_token": next(left), "token_type": "Bearer", "expires_in": expires_in},
                            delay=delay)
    return handler


def bearer_only(*valid: str):
    """An API that answers 401 unless the request carries one of the valid tokens."""
    def handler(request: RecordedRequest) -> StubResponse:
        ok = request.headers.get("Authorization") in {f"Bearer {t}" for t in valid}
        return StubResponse(200, {"ok": True}) if ok else StubResponse(401, {"error": "invalid_token"})
    return handler


# -- OAuth2 client credentials -----------------------------------------------------------------
def test_oauth2_posts_client_credentials_with_basic_auth_and_sends_the_bearer_token(
        make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", issuing(["tok-AAAA-1"]))
    http_stub.set_default(bearer_only("tok-AAAA-1"))
    assert call(make_adapter(oauth2(token_stub))).body == {"ok": True}
    (fetch,) = token_stub.requests
    assert fetch.method == "POST"
    assert fetch.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(fetch.text) == {"grant_type": ["client_credentials"], "scope": ["vouchers.write vouchers.read"]}
    basic = base64.b64encode(f"esb-client:{CLIENT_SECRET}".encode()).decode()
    assert fetch.headers["Authorization"] == f"Basic {basic}"
    assert http_stub.requests[0].headers["Authorization"] == "Bearer tok-AAAA-1"


def test_oauth2_client_auth_body_puts_id_and_secret_in_the_form(make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", issuing(["tok-AAAA-1"]))
    http_stub.set_default(bearer_only("tok-AAAA-1"))
    call(make_adapter(oauth2(token_stub, client_auth="body", scopes=[])))
    (fetch,) = token_stub.requests
    assert "Authorization" not in fetch.headers
    assert parse_qs(fetch.text) == {"grant_type": ["client_credentials"], "client_id": ["esb-client"],
                                    "client_secret": [CLIENT_SECRET]}


def test_the_token_is_fetched_once_for_all_threads(make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", issuing(["tok-AAAA-1", "tok-BBBB-2"], delay=0.3))
    http_stub.set_default(bearer_only("tok-AAAA-1"))
    adapter = make_adapter(oauth2(token_stub))
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(call(adapter).body)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"ok": True}] * 16
    assert len(token_stub.requests) == 1
    assert len(http_stub.requests) == 16


def test_the_token_is_renewed_before_it_expires(make_adapter, http_stub, token_stub):
    # lifetime 1s: renewed after half of it (refresh_before 60s is capped at half the lifetime)
    token_stub.route("/oauth2/token", issuing(["tok-AAAA-1", "tok-BBBB-2"], expires_in=1))
    http_stub.set_default(bearer_only("tok-AAAA-1", "tok-BBBB-2"))
    adapter = make_adapter(oauth2(token_stub))
    call(adapter)
    call(adapter)
    time.sleep(0.6)
    call(adapter)
    assert len(token_stub.requests) == 2
    assert [r.headers["Authorization"] for r in http_stub.requests] == \
        ["Bearer tok-AAAA-1", "Bearer tok-AAAA-1", "Bearer tok-BBBB-2"]


def test_a_401_fetches_a_new_token_and_sends_the_call_once_more(make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", issuing(["tok-AAAA-1", "tok-BBBB-2"]))
    http_stub.set_default(bearer_only("tok-BBBB-2"))  # the first token was revoked early
    assert call(make_adapter(oauth2(token_stub))).body == {"ok": True}
    assert len(token_stub.requests) == 2
    assert [r.headers["Authorization"] for r in http_stub.requests] == ["Bearer tok-AAAA-1", "Bearer tok-BBBB-2"]
    assert http_stub.requests[0].body == http_stub.requests[1].body


def test_a_second_401_is_permanent_and_shows_no_token(make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", issuing(["tok-AAAA-1", "tok-BBBB-2", "tok-CCCC-3"]))
    http_stub.set_default(lambda r: StubResponse(401, f"refused {r.headers['Authorization']}"))
    with pytest.raises(PermanentError, match="HTTP 401") as caught:
        call(make_adapter(oauth2(token_stub)))
    assert len(http_stub.requests) == 2 and len(token_stub.requests) == 2
    assert "tok-" not in str(caught.value) and "refused Bearer ***" in str(caught.value)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_failing_token_endpoint_is_transient_and_the_api_is_not_called(make_adapter, http_stub, token_stub, status):
    token_stub.route("/oauth2/token", lambda r: StubResponse(status, "down"))
    with pytest.raises(TransientError, match="token endpoint"):
        call(make_adapter(oauth2(token_stub)))
    assert http_stub.requests == []


def test_threads_waiting_on_a_failing_token_endpoint_share_its_one_answer(make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", lambda r: StubResponse(503, "down", delay=0.2))
    adapter = make_adapter(oauth2(token_stub))
    errors: list = []

    def one_call():
        try:
            call(adapter)
        except TransientError as exc:
            errors.append(exc)
    threads = [threading.Thread(target=one_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 8 and len(token_stub.requests) == 1
    assert all("answered HTTP 503" in str(e) for e in errors)


def test_an_unreachable_token_endpoint_is_transient(make_adapter, http_stub):
    auth = {"oauth2": {"url": "http://127.0.0.1:9/token", "client_id": "c", "client_secret": CLIENT_SECRET}}
    with pytest.raises(TransientError, match="could not be reached"):
        call(make_adapter(auth))


def test_refused_client_credentials_are_permanent_naming_adapter_and_token_url_but_no_secret(
        make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", lambda r: StubResponse(
        401, {"error": "invalid_client", "echo": CLIENT_SECRET, "got": r.headers["Authorization"]}))
    with pytest.raises(PermanentError) as caught:
        call(make_adapter(oauth2(token_stub)))
    text = str(caught.value)
    assert text.startswith("erp.create_voucher (POST /vouchers): ")
    assert f"the token endpoint {token_stub.url}/oauth2/token answered HTTP 401" in text
    assert CLIENT_SECRET not in text and base64.b64encode(f"esb-client:{CLIENT_SECRET}".encode()).decode() not in text
    assert http_stub.requests == []


def test_a_redirect_from_the_token_endpoint_is_not_followed(make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", lambda r: StubResponse(307, b"", {"Location": f"{http_stub.url}/steal"}))
    with pytest.raises(PermanentError, match="HTTP 307"):
        call(make_adapter(oauth2(token_stub)))
    assert http_stub.requests == []


def test_the_token_is_never_sent_to_another_host(make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", issuing(["tok-AAAA-1"]))
    elsewhere = StubHttpServer().start()
    try:
        http_stub.set_default(StubResponse(302, b"", {"Location": f"{elsewhere.url}/vouchers"}))
        with pytest.raises(PermanentError, match="refused a redirect to another host"):
            call(make_adapter(oauth2(token_stub)))
        assert elsewhere.requests == []
        assert [r.headers["Authorization"].split()[0] for r in token_stub.requests] == ["Basic"]  # never the token
    finally:
        elsewhere.stop()


# -- a vendor's token endpoint ------------------------------------------------------------------
def vendor(token_stub: StubHttpServer, **extra) -> dict:
    return {"token": {"url": f"{token_stub.url}/api/login.do",
                      "body": {"appId": "esb", "password": LOGIN_PASSWORD, "acct": 7},
                      "value": "data.access_token", "expires_in": "data.expires_in",
                      "headers": {"X-Token": "{token}", "X-Auth": "Token {token}"}, **extra}}


def test_a_vendor_token_is_read_at_its_path_and_sent_in_the_configured_headers(make_adapter, http_stub, token_stub):
    token_stub.route("/api/login.do", lambda r: StubResponse(
        200, {"errcode": 0, "data": {"access_token": "vend-TOKEN-1", "expires_in": 7200}}))
    http_stub.set_default(StubResponse(200, {"ok": True}))
    adapter = make_adapter(vendor(token_stub))
    call(adapter)
    call(adapter)
    (login,) = token_stub.requests
    assert login.json() == {"appId": "esb", "password": LOGIN_PASSWORD, "acct": 7}
    assert login.headers["Content-Type"] == "application/json"
    assert [(r.headers["X-Token"], r.headers["X-Auth"]) for r in http_stub.requests] == \
        [("vend-TOKEN-1", "Token vend-TOKEN-1")] * 2


def test_a_vendor_token_body_can_be_a_form(make_adapter, http_stub, token_stub):
    token_stub.route("/api/login.do", lambda r: StubResponse(200, {"data": {"access_token": "vend-TOKEN-1"}}))
    http_stub.set_default(StubResponse(200, {"ok": True}))
    call(make_adapter(vendor(token_stub, form=True, lifetime="2h")))
    assert parse_qs(token_stub.requests[0].text) == {"appId": ["esb"], "password": [LOGIN_PASSWORD], "acct": ["7"]}


def test_a_vendor_answer_without_a_token_is_permanent_and_masks_the_secret(make_adapter, http_stub, token_stub):
    token_stub.route("/api/login.do", lambda r: StubResponse(
        200, {"errcode": 1001, "message": f"wrong password {LOGIN_PASSWORD}"}))
    with pytest.raises(PermanentError, match=r"without a token at 'data.access_token'.*errcode") as caught:
        call(make_adapter(vendor(token_stub)))
    assert LOGIN_PASSWORD not in str(caught.value)
    assert http_stub.requests == []


def test_a_vendor_token_is_renewed_after_a_401(make_adapter, http_stub, token_stub):
    tokens = iter(["vend-TOKEN-1", "vend-TOKEN-2"])
    token_stub.route("/api/login.do", lambda r: StubResponse(200, {"data": {"access_token": next(tokens)}}))
    http_stub.set_default(lambda r: StubResponse(200 if r.headers["X-Token"] == "vend-TOKEN-2" else 401))
    call(make_adapter(vendor(token_stub)))
    assert [r.headers["X-Token"] for r in http_stub.requests] == ["vend-TOKEN-1", "vend-TOKEN-2"]


# -- signatures, checked by the server ------------------------------------------------------------
class SignatureChecker:
    """A server-side check written from the documented recipe (not from esb's code): recompute,
    compare, refuse a nonce seen before and a timestamp more than 300s off."""

    def __init__(self, canonical: Callable[[RecordedRequest], str], mac: Callable[[bytes], bytes],
                 encode: Callable[[bytes], str], millis: bool = False):
        self.canonical, self.mac, self.encode, self.millis = canonical, mac, encode, millis
        self.seen: set[str] = set()
        self.refusals: list[str] = []

    def __call__(self, request: RecordedRequest) -> StubResponse:
        reason = self.refusal(request)
        if reason:
            self.refusals.append(reason)
            return StubResponse(401, {"error": reason})
        return StubResponse(200, {"ok": True})

    def refusal(self, request: RecordedRequest) -> str | None:
        stamp = int(request.headers["X-Timestamp"]) / (1000 if self.millis else 1)
        if abs(time.time() - stamp) > 300:
            return "stale timestamp"
        if request.headers["X-Nonce"] in self.seen:
            return "replayed nonce"
        expected = self.encode(self.mac(self.canonical(request).encode()))
        if not hmac.compare_digest(expected, request.headers["X-Signature"]):
            return "bad signature"
        self.seen.add(request.headers["X-Nonce"])
        return None


def _sorted_query(request: RecordedRequest) -> str:
    return "&".join(sorted(request.query.split("&"))) if request.query else ""


STYLES = {
    "hmac-sha256 hex over method, path, sorted query, body hash, timestamp, nonce": (
        {"parts": ["method", "path", "query", "body_sha256", "timestamp", "nonce"], "algorithm": "hmac-sha256"},
        SignatureChecker(lambda r: "\n".join([r.method, r.path, _sorted_query(r), hashlib.sha256(r.body).hexdigest(),
                                              r.headers["X-Timestamp"], r.headers["X-Nonce"]]),
                         lambda m: hmac.new(SIGNING_KEY.encode(), m, hashlib.sha256).digest(), bytes.hex)),
    "hmac-sha1 base64, ms timestamp, joined by &": (
        {"parts": ["app_key", "timestamp", "nonce", "target"], "join": "&", "algorithm": "hmac-sha1",
         "encoding": "base64", "timestamp": "ms", "app_key": "app-42"},
        SignatureChecker(lambda r: "&".join(["app-42", r.headers["X-Timestamp"], r.headers["X-Nonce"], r.target]),
                         lambda m: hmac.new(SIGNING_KEY.encode(), m, hashlib.sha1).digest(),
                         lambda d: base64.b64encode(d).decode(), millis=True)),
    "md5 upper-case hex of a template holding the secret": (
        {"template": "appKey={app_key}&ts={timestamp}&nonce={nonce}{body}{secret}", "algorithm": "md5",
         "encoding": "hex-upper", "app_key": "app-42"},
        SignatureChecker(lambda r: f"appKey=app-42&ts={r.headers['X-Timestamp']}&nonce={r.headers['X-Nonce']}"
                                   f"{r.text}{SIGNING_KEY}",
                         lambda m: hashlib.md5(m).digest(), lambda d: d.hex().upper())),
}


@pytest.mark.parametrize("style", STYLES)
def test_signed_requests_pass_a_server_that_checks_them(make_adapter, http_stub, style):
    config, checker = STYLES[style]
    http_stub.set_default(checker)
    adapter = make_adapter({"signature": {"secret": SIGNING_KEY, **config}})
    call(adapter)
    call(adapter, "find")
    assert checker.refusals == []
    assert [r.target for r in http_stub.requests] == ["/vouchers", "/vouchers?b=2&a=V-1&c=x+y"]
    assert http_stub.requests[0].headers["X-Nonce"] != http_stub.requests[1].headers["X-Nonce"]


def test_the_checking_server_refuses_a_replay_and_a_stale_timestamp(make_adapter, http_stub):
    config, checker = STYLES["hmac-sha256 hex over method, path, sorted query, body hash, timestamp, nonce"]
    http_stub.set_default(checker)
    call(make_adapter({"signature": {"secret": SIGNING_KEY, **config}}))
    (sent,) = http_stub.requests
    headers = dict(sent.headers)
    replay = urllib3.request("POST", http_stub.url + sent.target, body=sent.body, headers=headers)
    stale = urllib3.request("POST", http_stub.url + sent.target, body=sent.body,
                            headers={**headers, "X-Nonce": "f" * 32, "X-Timestamp": str(int(time.time()) - 3600)})
    assert (replay.status, stale.status) == (401, 401)
    assert checker.refusals == ["replayed nonce", "stale timestamp"]


def test_the_signature_headers_are_configurable(make_adapter, http_stub):
    http_stub.set_default(StubResponse(200, {"ok": True}))
    call(make_adapter({"signature": {"secret": SIGNING_KEY, "app_key": "app-42", "template": "{app_key}{timestamp}",
                                     "timestamp": "ms", "encoding": "base64",
                                     "headers": {"appKey": "{app_key}", "ts": "{timestamp}", "sign": "{signature}"}}}))
    headers = http_stub.requests[0].headers
    expected = hmac.new(SIGNING_KEY.encode(), f"app-42{headers['ts']}".encode(), hashlib.sha256).digest()
    assert headers["sign"] == base64.b64encode(expected).decode()
    assert headers["appKey"] == "app-42" and len(headers["ts"]) == 13
    assert "X-Signature" not in headers


@pytest.mark.parametrize(("auth", "says"), [
    ({"signature": {"secret": "k", "template": "{method}{oops}"}}, "unknown field {oops}"),
    ({"signature": {"secret": "k", "parts": ["method"], "headers": {"X-Sig": "{signature"}}}, "stray brace"),
    ({"token": {"url": "http://127.0.0.1:9/login", "value": "data.token", "headers": {"X-Token": "fixed"}}},
     "must hold {token}"),
    ({"token": {"url": "http://127.0.0.1:9/login", "value": "data[", "headers": {"X-Token": "{token}"}}},
     "not a JMESPath expression"),
    ({"oauth2": {"url": "http://user:pw@127.0.0.1:9/token", "client_id": "c", "client_secret": "s"}},
     "user name or password in its token url"),
])
def test_an_auth_setting_that_cannot_work_is_a_config_error(make_adapter, auth, says):
    with pytest.raises(ConfigError, match="the adapter 'erp'") as caught:
        make_adapter(auth)
    assert says in str(caught.value)


# -- secrets stay masked ---------------------------------------------------------------------------
def test_secrets_and_fetched_tokens_never_appear_in_api_errors(make_adapter, http_stub, token_stub):
    token_stub.route("/oauth2/token", issuing(["tok-AAAA-1"]))
    http_stub.set_default(lambda r: StubResponse(400, f"bad request with {r.headers['Authorization']} {CLIENT_SECRET}"))
    with pytest.raises(PermanentError) as caught:
        call(make_adapter(oauth2(token_stub)))
    assert "tok-AAAA-1" not in str(caught.value) and CLIENT_SECRET not in str(caught.value)
    http_stub.set_default(lambda r: StubResponse(400, f"bad signature {SIGNING_KEY}"))
    with pytest.raises(PermanentError) as caught:
        call(make_adapter({"signature": {"secret": SIGNING_KEY, "parts": ["method"]}}))
    assert SIGNING_KEY not in str(caught.value)


EXAMPLE_ENV = {"ERP_API_URL": "https://erp.example/api", "ERP_TOKEN_URL": "https://login.erp.example/oauth2/token",
               "ERP_CLIENT_ID": "esb", "ERP_CLIENT_SECRET": CLIENT_SECRET,
               "KD_API_URL": "https://kd.example/ierp", "KD_LOGIN_URL": "https://kd.example/ierp/api/login.do",
               "KD_APP_ID": "esb", "KD_APP_SECRET": SIGNING_KEY, "KD_ACCOUNT_ID": "100", "KD_USER": "esb",
               "YY_API_URL": "https://yy.example", "YY_APP_KEY": "app-42", "YY_APP_SECRET": SIGNING_KEY}


@pytest.mark.parametrize("name", ["erp-oauth2", "erp-token-login", "erp-signed"])
def test_each_example_adapter_loads_opens_and_shows_no_secret(name):
    located = load_yaml(ROOT / "adapters" / "examples" / f"{name}.yaml", f"adapters/examples/{name}.yaml")
    spec, errors = load_adapter(located, ROOT, EXAMPLE_ENV)
    assert errors == [] and spec is not None
    open_adapter(spec, ROOT).close()  # opening fetches nothing: tokens are fetched on the first call
    shown = repr(spec.shown())
    assert CLIENT_SECRET not in shown and SIGNING_KEY not in shown


def test_the_example_adapters_are_not_loaded_with_the_project(tmp_path):
    shutil.copytree(ROOT / "adapters" / "examples", tmp_path / "adapters" / "examples")
    (tmp_path / "adapters" / "ledger.yaml").write_text(
        "name: ledger\nkind: rest\nbase_url: https://gl.example\noperations: {post: {method: POST, path: /e}}\n")
    assert set(load_project(tmp_path, {}).adapters) == {"ledger"}  # not even their ${VAR}s are asked for


# -- route tests never call the token endpoint -----------------------------------------------------
def test_a_route_test_of_a_route_whose_adapter_uses_oauth2_runs_without_any_network(tmp_path, token_stub, http_stub):
    files = {
        "adapters/erp.yaml": f"""\
            name: erp
            kind: rest
            base_url: {http_stub.url}
            auth:
              oauth2: {{url: "{token_stub.url}/oauth2/token", client_id: esb, client_secret: "${{ERP_CLIENT_SECRET}}"}}
            operations:
              create_voucher: {{method: POST, path: /vouchers}}
            """,
        "routes/route.yaml": """\
            name: claim-to-erp
            source: {exchange: oa.events, binding_key: expense.approved}
            steps:
              - {label: create-voucher, to: {adapter: erp, operation: create_voucher, into: voucher}}
            """,
        "routes/tests/route.yaml": """\
            route: claim-to-erp
            cases:
              - name: the token endpoint is mocked with the step
                input: {body: {claim_id: EXP-1}}
                mocks: {create-voucher: {body: {voucher_no: V-1}}}
                expect: {body: {claim_id: EXP-1, voucher: {voucher_no: V-1}}}
            """}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (result,) = run_route_tests(load_project(tmp_path, {"ERP_CLIENT_SECRET": CLIENT_SECRET}))
    assert result.passed, result.reasons
    assert token_stub.requests == [] and http_stub.requests == []
