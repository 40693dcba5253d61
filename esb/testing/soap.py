"""SOAP stand-ins on loopback for tests and `esb demo`: spyne services on a threaded wsgiref server.

    archive = VoucherArchiveServer(users={"esb": "demo-password"}).start()
    archive.url                    # http://127.0.0.1:PORT/ws/voucher-archive
    archive.fail_next("Server", "the archive database is down")   # the next call gets this fault
    archive.delay = 0.5            # every answer waits this long (a slow far side)
    archive.archives["V-1"]        # what was archived: amounts as the Decimal received
    archive.requests[0].headers["Idempotency-Key"]
    archive.stop()

VoucherArchiveServer implements the contract of adapters/wsdl/voucher-archive.wsdl (namespace,
element names, types and restrictions), so the project's adapter talks to it unchanged; it
archives a voucher once (a repeat gets the same archive id) and checks the WS-Security
UsernameToken when given `users`. BlzServer implements BLZService (the public German bank-code
lookup of ../shared/testdata/wsdl/BLZService.wsdl) over SOAP 1.1 at `url` and 1.2 at `url12`.

spyne is optional: it is needed only here (extras `test` and `demo`), and a clear ImportError
says so when it is missing.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import threading
import types
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from importlib.util import spec_from_loader
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from lxml import etree

from esb.testing.http import Headers, RecordedRequest

VOUCHER_ARCHIVE_NS = "http://oa.example.cn/ws/voucher-archive"
BLZ_NS = "http://thomas-bayer.com/blz/"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
# The one bank whose details are published beside the BLZService WSDL (../shared/testdata/wsdl/README.md).
KNOWN_BANKS = {"37050198": {"bezeichnung": "Sparkasse KölnBonn", "bic": "COLSDE33XXX", "ort": "Köln", "plz": "50667"}}

_spyne_modules: types.SimpleNamespace | None = None


def load_spyne() -> types.SimpleNamespace:
    """The parts of spyne the stand-ins use, imported on first use."""
    global _spyne_modules
    if _spyne_modules is None:
        try:
            with warnings.catch_warnings():
                # spyne 2.14 imports `cgi` (deprecated) and vendors a six whose importer warns
                # until _teach_six_find_spec below mends it; neither concerns esb.
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=ImportWarning)
                import spyne as spyne_pkg
                import spyne.protocol.soap
                import spyne.server.wsgi
                import spyne.util.appreg
                from spyne.util import six as spyne_six
        except ImportError as exc:
            raise ImportError(f"the SOAP stand-in servers need spyne ({exc}): pip install 'esb[test]' "
                              "(or 'esb[demo]')") from exc
        _teach_six_find_spec(type(spyne_six._importer))
        # A scripted fault is the point of a stand-in; spyne would log each one with a traceback.
        logging.getLogger("spyne").setLevel(logging.CRITICAL)
        _spyne_modules = types.SimpleNamespace(
            **{name: getattr(spyne_pkg, name) for name in (
                "Application", "ServiceBase", "rpc", "Unicode", "Decimal", "Boolean", "ComplexModel", "Fault")},
            Soap11=spyne.protocol.soap.Soap11, Soap12=spyne.protocol.soap.Soap12,
            WsgiApplication=spyne.server.wsgi.WsgiApplication,
            unregister_application=spyne.util.appreg.unregister_application)
    return _spyne_modules


def _teach_six_find_spec(importer: type) -> None:
    """spyne 2.14 vendors six 1.14, whose meta-path importer predates find_spec. It stays on
    sys.meta_path, so every later *failed* import in the process (any `try: import x`) warns
    ImportWarning first, an error under `-W error`. These are six 1.16's own three methods."""
    if hasattr(importer, "find_spec"):
        return

    def find_spec(self, fullname, path=None, target=None):
        return spec_from_loader(fullname, self) if fullname in self.known_modules else None

    importer.find_spec = find_spec
    importer.create_module = lambda self, spec: self.load_module(spec.name)
    importer.exec_module = lambda self, module: None


# -- the server ----------------------------------------------------------------------------------
class SoapServer:
    """spyne applications on 127.0.0.1 (a free port) in a background thread; records every request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._address = (host, port)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: deque[tuple[str, str]] = deque()
        self._stopping = threading.Event()
        self._server: _WsgiServer | None = None
        self._thread: threading.Thread | None = None
        self._apps: list[Any] = []
        self.delay = 0.0

    def applications(self) -> dict[str, Callable]:
        """WSGI applications by path; a subclass serves its spyne services here."""
        raise NotImplementedError

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> SoapServer:
        apps = self.applications()
        self._apps = list(apps.values())
        self._server = make_server(*self._address, self._recording(apps), server_class=_WsgiServer,
                                   handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"soap-{type(self).__name__}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end delayed answers and wait for the serving thread."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = None
        for app in self._apps:  # spyne keeps every Application in a process-wide registry
            with contextlib.suppress(KeyError):
                load_spyne().unregister_application(app.app)
        self._apps = []

    def __enter__(self) -> SoapServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    # -- scripting -------------------------------------------------------------------------
    def fail_next(self, code: str = "Server", message: str = "the service is unavailable", times: int = 1) -> None:
        """Answer the next `times` calls with a SOAP fault: code Server/Receiver or Client/Sender (+ `.Detail`)."""
        with self._lock:
            self._faults.extend([(code, message)] * times)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    # -- called by the serving threads -----------------------------------------------------
    def scripted_fault(self) -> None:
        """Raise the next scripted fault, if any; each service method calls this first."""
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            raise load_spyne().Fault(*fault)

    def _recording(self, apps: Mapping[str, Callable]) -> Callable:
        def app(environ: dict, start_response: Callable) -> Any:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            with self._lock:
                self._requests.append(_recorded(environ, body))
            if self.delay > 0 and self._stopping.wait(self.delay):
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"stopping"]
            target = apps.get(environ.get("PATH_INFO", ""))
            if target is None:
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"no SOAP service here"]
            return target(environ, start_response)
        return app


class _WsgiServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops connections when a route's workers call at once
    block_on_close = False  # a handler still waiting out a delay is a daemon; stop() does not wait for it

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up is an expected case here


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _recorded(environ: dict, body: bytes) -> RecordedRequest:
    pairs = [(key[5:].replace("_", "-").title(), value) for key, value in environ.items() if key.startswith("HTTP_")]
    pairs += [(key.replace("_", "-").title(), environ[key]) for key in ("CONTENT_TYPE", "CONTENT_LENGTH")
              if environ.get(key)]
    return RecordedRequest(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
                           Headers(pairs), body)


def username_token(ctx: Any) -> tuple[str | None, str | None]:
    """The (username, password) of the request's WS-Security UsernameToken, or (None, None)."""
    for header in ctx.in_header_doc or ():
        token = header.find(f"{{{WSSE_NS}}}UsernameToken") if etree.iselement(header) else None
        if token is not None:
            return token.findtext(f"{{{WSSE_NS}}}Username"), token.findtext(f"{{{WSSE_NS}}}Password")
    return None, None


# -- the OA voucher archive --------------------------------------------------------------------------
class VoucherArchiveServer(SoapServer):
    """The OA voucher archive of adapters/wsdl/voucher-archive.wsdl: ArchiveVoucher, CancelArchive."""

    path = "/ws/voucher-archive"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, users: Mapping[str, str] | None = None):
        super().__init__(host, port)
        self.users = dict(users) if users is not None else None
        self.archives: dict[str, dict[str, Any]] = {}
        self._numbers = itertools.count(1)

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def applications(self) -> dict[str, Callable]:
        s = load_spyne()
        server = self
        tns = VOUCHER_ARCHIVE_NS
        required = {"min_occurs": 1, "nillable": False}
        voucher_no = s.Unicode(min_len=1, max_len=40, **required)

        class VoucherArchiveService(s.ServiceBase):
            @s.rpc(voucher_no, s.Decimal(fraction_digits=2, total_digits=18, **required),
                   s.Unicode(pattern="[A-Z]{3}", **required), s.Unicode(**required),
                   _in_message_name="VoucherReceipt", _operation_name="ArchiveVoucher",
                   _out_message_name="ArchiveVoucherResponse", _out_variable_name="archive_id",
                   _returns=s.Unicode(**required))
            def ArchiveVoucher(ctx, voucher_no, amount, currency, claim_id):  # noqa: N802, N805 - WSDL names
                server.authenticate(ctx)
                return server.archive(voucher_no, amount, currency, claim_id)

            @s.rpc(voucher_no, s.Unicode, s.Unicode, _operation_name="CancelArchive",
                   _in_message_name="CancelArchive", _out_message_name="CancelArchiveResponse",
                   _out_variable_name="cancelled", _returns=s.Boolean(**required))
            def CancelArchive(ctx, voucher_no, archive_id, reason):  # noqa: N802, N805 - WSDL names
                server.authenticate(ctx)
                return server.cancel(voucher_no, archive_id)

        app = s.Application([VoucherArchiveService], tns=tns, name="VoucherArchive",
                            in_protocol=s.Soap11(validator="lxml"), out_protocol=s.Soap11())
        return {self.path: s.WsgiApplication(app)}

    def authenticate(self, ctx: Any) -> None:
        self.scripted_fault()
        if self.users is None:
            return
        username, password = username_token(ctx)
        if username is None:
            raise _archive_fault("Client.Authentication", "unauthenticated",
                                 "a WS-Security UsernameToken is required")
        if self.users.get(username) != password:
            raise _archive_fault("Client.Authentication", "unauthenticated", "the user name or password is wrong")

    def archive(self, voucher_no: str, amount: Decimal, currency: str, claim_id: str) -> str:
        with self._lock:
            known = self.archives.get(voucher_no)
            if known is None or known["cancelled"]:
                known = self.archives[voucher_no] = {
                    "archive_id": f"ARC-{next(self._numbers):06d}", "amount": amount, "currency": currency,
                    "claim_id": claim_id, "cancelled": False}
            return known["archive_id"]  # a repeat of the same voucher is archived once

    def cancel(self, voucher_no: str, archive_id: str | None) -> bool:
        with self._lock:
            known = self.archives.get(voucher_no)
            if known is None or (archive_id and archive_id != known["archive_id"]):
                raise _archive_fault("Client.UnknownVoucher", "unknown-voucher",
                                     f"no archive of voucher {voucher_no}")
            known["cancelled"] = True
            return True


def _archive_fault(code: str, short: str, message: str) -> Exception:
    """A fault whose detail is the WSDL's ArchiveFault element."""
    detail = etree.Element(f"{{{VOUCHER_ARCHIVE_NS}}}ArchiveFault", nsmap={"tns": VOUCHER_ARCHIVE_NS})
    etree.SubElement(detail, f"{{{VOUCHER_ARCHIVE_NS}}}code").text = short
    etree.SubElement(detail, f"{{{VOUCHER_ARCHIVE_NS}}}message").text = message
    return load_spyne().Fault(code, message, detail=detail)


# -- the BLZ bank-code lookup --------------------------------------------------------------------------
class BlzServer(SoapServer):
    """BLZService's getBank (bank code -> name, BIC, city, postcode) over SOAP 1.1 and 1.2."""

    path = "/axis2/services/BLZService"
    path12 = "/axis2/services/BLZService12"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, banks: Mapping[str, Mapping[str, str]] = KNOWN_BANKS):
        super().__init__(host, port)
        self.banks = {blz: dict(details) for blz, details in banks.items()}

    @property
    def url(self) -> str:
        return self.base_url + self.path

    @property
    def url12(self) -> str:
        return self.base_url + self.path12

    def applications(self) -> dict[str, Callable]:
        s = load_spyne()
        return {self.path: s.WsgiApplication(self._application(s, s.Soap11, "BLZService")),
                self.path12: s.WsgiApplication(self._application(s, s.Soap12, "BLZService12"))}

    def _application(self, s: types.SimpleNamespace, protocol: type, name: str) -> Any:
        server = self

        class Details(s.ComplexModel):
            __namespace__ = BLZ_NS
            __type_name__ = "detailsType"
            _type_info = [("bezeichnung", s.Unicode), ("bic", s.Unicode), ("ort", s.Unicode), ("plz", s.Unicode)]

        class BLZService(s.ServiceBase):
            @s.rpc(s.Unicode(min_occurs=1, nillable=False), _returns=Details.customize(min_occurs=1, nillable=False),
                   _out_variable_name="details")
            def getBank(ctx, blz):  # noqa: N802, N805 - the WSDL's names
                server.scripted_fault()
                details = server.banks.get(blz)
                if details is None:  # "Client" is written "Sender" by spyne's SOAP 1.2 protocol
                    raise s.Fault("Client.UnknownBLZ", f"no bank has the bank code {blz}")
                return Details(**details)

        return s.Application([BLZService], tns=BLZ_NS, name=name, in_protocol=protocol(validator="lxml"),
                             out_protocol=protocol())
