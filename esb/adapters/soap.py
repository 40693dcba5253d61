"""SOAP adapter: each operation is one call of a WSDL operation through a shared zeep client.

Configuration (adapters/NAME.yaml, kind soap)
    wsdl        the WSDL file, relative to the project root. It is read once, when the adapter
                opens, and never fetched: documents it imports are read only from local files
                under the project root or beside the WSDL; any http(s) or other URL is refused.
    service     the wsdl:service to use; may be left out when the WSDL has one
    port        its SOAP port (1.1 or 1.2); may be left out when the service has one
    address     the endpoint, overriding the port's soap:address (http or https)
    timeout     per call, default 30s: connect, every read, and the whole response
    wsse        {username, password}: a WS-Security UsernameToken (PasswordText) in every call
    operations  {name: {operation: WSDL operation}}: the names routes use

Request
    A JSON object body is the operation's parameters by name (Decimals are sent digit for
    digit). An XML body (the document a `json_to_xml` step built, such as VoucherReceipt) is
    read with esb.transform.safexml; its root element's children and attributes are the
    parameters, by local name. Fields the operation does not declare are left out, so a
    compensation can be called with the body its step returned. zeep checks the rest against
    the WSDL (strict). The HTTP request carries `Idempotency-Key` and `X-Message-Id`, as the
    REST adapter's does.

Outcome
    a reply             a Message with the same id and headers and a JSON body: the children of
                        the response element as an object ({"archive_id": "A-1"}), built with
                        zeep.helpers.serialize_object into dicts, lists, str, int, Decimal, bool
                        and None; xsd:decimal stays Decimal, xsd:float/double become Decimal (of
                        their shortest repr), dates and times ISO text, binary base64 text
    Client/Sender fault, any other fault code (VersionMismatch, MustUnderstand, ...)
                        PermanentError "SOAP fault <faultcode>: <faultstring>"
    Server/Receiver fault, HTTP 429 or 5xx without a fault, timeouts, connection errors
                        TransientError
    HTTP 3xx or 4xx without a fault (redirects are never followed)
                        PermanentError
    a reply with a DOCTYPE or ENTITY, not well-formed, not a SOAP envelope, a Body holding
    another element than the operation's response, over 64 MiB
                        PermanentError "hostile or malformed SOAP response ..."; nothing in it
                        is expanded (zeep: forbid_dtd, forbid_entities, strict, no huge trees)
    a body that does not fit the operation's request
                        ValidationError (permanent), before anything is sent
Every error names adapter, operation and WSDL operation, and has the password masked; the zeep
or requests cause is not chained. zeep logs each exchange at DEBUG (logger zeep.transports):
a filter on zeep's loggers masks every <wsse:Password> element and password value there.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import zeep
import zeep.exceptions
import zeep.helpers
from lxml import etree
from requests.adapters import HTTPAdapter
from zeep.wsdl.bindings.soap import SoapBinding
from zeep.wsse.username import UsernameToken
from zeep.xsd.valueobjects import CompoundValue

from esb import __version__
from esb.adapters.spec import MASK, AdapterSpec, positive_seconds
from esb.errors import ConfigError, PermanentError, ProcessingError, TransientError, ValidationError
from esb.loading.registry import did_you_mean
from esb.message import JSON, XML, Message
from esb.transform.safexml import local_file, parse_xml
from esb.transform.xmljson import xml_to_json

DEFAULT_TIMEOUT = 30.0
MAX_CONNECT_TIMEOUT = 5.0
MAX_CONNECTIONS = 128          # steps run on a thread pool per route; many routes may share one adapter
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_WSDL_BYTES = 16 * 1024 * 1024
SNIPPET_CHARS = 200
IDEMPOTENCY_HEADER = "Idempotency-Key"
MESSAGE_ID_HEADER = "X-Message-Id"

# printable ASCII except `%`, as the REST adapter quotes header values: reversible, so distinct keys stay distinct
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
_PASSWORD_ELEMENT = re.compile(r"(<(?:[\w.-]+:)?Password\b[^>]*>).*?(</(?:[\w.-]+:)?Password\s*>)", re.S)
_TRANSIENT_FAULTS = ("server", "receiver")  # and every other faultcode (Client, Sender, ...) is permanent
_ENVELOPE_NAMESPACES = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")


class _Failure(Exception):
    """An outcome raised inside the adapter and turned into an esb error, once, by `call`."""

    def __init__(self, kind: type[ProcessingError], text: str):
        super().__init__(text)
        self.kind, self.text = kind, text


@dataclasses.dataclass(frozen=True)
class _Operation:
    name: str          # as routes call it
    wsdl_name: str     # the WSDL operation
    parameters: frozenset[str]
    reply_child: str | None  # the single child zeep unwraps from the response element, if any
    reply_type: Any


class SoapAdapter:
    """One configured SOAP endpoint; thread-safe, one zeep client and connection pool per process."""

    def __init__(self, spec: AdapterSpec, root: Path):
        settings = spec.settings
        self.name = spec.name
        wsse = settings.get("wsse") or {}
        self._secrets = _secret_forms(wsse.get("password"))
        _REDACTOR.add(self._secrets)  # before zeep can log anything of ours
        self._transport: _Transport | None = None
        try:
            self._timeout = positive_seconds(spec, "timeout", spec.settings.get("timeout"), DEFAULT_TIMEOUT)
            wsdl = (root / str(settings["wsdl"])).absolute()
            self._transport = _Transport([root, wsdl.parent], self._timeout)
            self._client = _client(spec, wsdl, self._transport, wsse)
            binding, address = _binding(spec, self._client)
            self._service = self._client.create_service(binding.name, address)
            self._operations = {name: _operation(spec, binding, name, op["operation"])
                                for name, op in spec.operations.items()}
        except BaseException:
            if self._transport is not None:
                self._transport.session.close()
            _REDACTOR.remove(self._secrets)
            raise
        self._closed = False

    def call(self, operation: str, message: Message, *, idempotency_key: str) -> Message:
        op = self._operations.get(operation)
        if op is None:
            raise PermanentError(self._redact(f"{self.name}: no operation '{operation}' "
                                              f"(the adapter has {', '.join(sorted(self._operations))})"))
        try:
            return message.with_body(self._call(op, message, idempotency_key), JSON)
        except _Failure as failure:
            raise failure.kind(self._redact(f"{self.name}.{op.name} ({op.wsdl_name}): {failure.text}")) from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.session.close()
            _REDACTOR.remove(self._secrets)

    def __repr__(self) -> str:
        return f"SoapAdapter({self.name!r})"

    # -- one call --------------------------------------------------------------------------
    def _call(self, op: _Operation, message: Message, idempotency_key: str) -> Any:
        parameters = _parameters(message, op.parameters)
        headers = {IDEMPOTENCY_HEADER: quote(idempotency_key, safe=_HEADER_SAFE),
                   MESSAGE_ID_HEADER: quote(message.message_id, safe=_HEADER_SAFE)}
        self._transport.local.sent = False
        try:
            with self._client.settings(extra_http_headers=headers):
                result = self._service[op.wsdl_name](**parameters)
        except _Failure:
            raise
        except Exception as exc:  # noqa: BLE001 - translated at the edge, by type, below
            raise self._failure(exc, sent=self._transport.local.sent) from None
        return _reply_json(op, result)

    def _failure(self, exc: Exception, *, sent: bool) -> _Failure:
        if not sent:
            return _request_failure(exc)
        if isinstance(exc, requests.RequestException):
            return _transport_failure(exc, self._timeout, self._closed)
        if isinstance(exc, zeep.exceptions.Fault):
            return _fault_failure(exc)
        if isinstance(exc, (zeep.exceptions.Error, etree.LxmlError, ValueError, TypeError, LookupError)):
            return _response_failure(exc)
        raise exc

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


# -- the request -------------------------------------------------------------------------------
def _parameters(message: Message, accepted: frozenset[str]) -> dict[str, Any]:
    """The operation's keyword arguments, by name, from a JSON object or an XML document."""
    body = message.body
    if _is_xml(message.content_type):
        body = _xml_parameters(body)
    elif not message.is_json:
        raise _Failure(ValidationError, f"a {message.content_type} body cannot be sent: the operation's "
                                        "parameters come from a JSON object or an XML document")
    elif body is None:
        body = {}
    elif not isinstance(body, dict):
        raise _Failure(ValidationError, f"the body is a JSON {type(body).__name__}, not an object of the "
                                        "operation's parameters")
    return {name: value for name, value in body.items() if name in accepted}


def _is_xml(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media in (XML, "text/xml") or media.endswith("+xml")


def _xml_parameters(document: Any) -> dict[str, Any]:
    if not isinstance(document, (str, bytes)):
        raise _Failure(ValidationError, f"an XML body must be text, not {type(document).__name__}")
    try:
        root = parse_xml(document)
        (value,) = xml_to_json(root).values()
    except ProcessingError as exc:
        raise _Failure(type(exc), f"the XML body cannot be read: {exc.message}") from None
    value = _from_xml(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Failure(ValidationError, "the XML body's root element holds only text; its children are the "
                                        "operation's parameters")
    return value


def _from_xml(value: Any) -> Any:
    """xmltodict-style JSON as zeep takes it: local names, attributes without `@`, text as _value_1."""
    if isinstance(value, list):
        return [_from_xml(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        if key == "@xmlns" or key.startswith("@xmlns:"):
            continue
        name = "_value_1" if key == "#text" else key.removeprefix("@").rpartition(":")[2]
        result[name] = _from_xml(item)
    return result


def _request_failure(exc: Exception) -> _Failure:
    if isinstance(exc, (zeep.exceptions.Error, etree.LxmlError, ValueError, TypeError, LookupError)):
        detail = str(exc) or type(exc).__name__  # zeep says what is missing or wrong, and where; never a value
        return _Failure(ValidationError, f"the message does not fit the WSDL operation's request: "
                                         f"{_short(detail)}")
    raise exc


# -- the reply ---------------------------------------------------------------------------------
def _reply_json(op: _Operation, result: Any) -> Any:
    value = _plain(zeep.helpers.serialize_object(result, dict))
    # zeep hands back the only child of a response element instead of the element; put it back,
    # so every reply is the response element's children by name, as the request is.
    if op.reply_child is not None and not (isinstance(result, CompoundValue) and result._xsd_type is op.reply_type):
        return {op.reply_child: value}
    return value


def _plain(value: Any) -> Any:
    """A serialized zeep value as JSON types: no float, no datetime, no bytes."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (str, bool, int, Decimal)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Failure(PermanentError, f"hostile or malformed SOAP response: the number {value} is not finite")
        return Decimal(repr(value))
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if etree.iselement(value):
        return etree.tostring(value, encoding="unicode")
    return str(value)  # QName, isodate Duration, timedelta


def _fault_failure(fault: zeep.exceptions.Fault) -> _Failure:
    code = str(fault.code or "")
    kind = TransientError if _fault_class(code) in _TRANSIENT_FAULTS else PermanentError
    return _Failure(kind, f"SOAP fault {code or '(no faultcode)'}: {_short(str(fault.message or ''))}")


def _fault_class(code: str) -> str:
    """`soap11env:Client.UnknownBLZ` -> `client`; `{ns}Receiver` -> `receiver`."""
    local = code.rpartition("}")[2].rpartition(":")[2]
    return local.partition(".")[0].strip().lower()


def _response_failure(exc: Exception) -> _Failure:
    if isinstance(exc, zeep.exceptions.DTDForbidden):
        return _Failure(PermanentError, "hostile or malformed SOAP response: it declares a DTD (<!DOCTYPE>), "
                                        "which is never processed")
    if isinstance(exc, zeep.exceptions.EntitiesForbidden):
        return _Failure(PermanentError, "hostile or malformed SOAP response: it declares entities "
                                        "(<!ENTITY>), which are never expanded")
    if isinstance(exc, zeep.exceptions.TransportError):
        if 200 <= exc.status_code < 300:
            return _Failure(PermanentError, f"hostile or malformed SOAP response (HTTP {exc.status_code}): it is "
                                            "not well-formed XML")
        return _http_failure(exc.status_code, exc.content)
    detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return _Failure(PermanentError, f"hostile or malformed SOAP response: {_short(detail)}")


def _http_failure(status: int, content: Any) -> _Failure:
    kind = TransientError if status == 429 or status >= 500 else PermanentError
    return _Failure(kind, f"HTTP {status} without a SOAP fault{_snippet(content)}")


def _transport_failure(exc: requests.RequestException, timeout: float, closed: bool) -> _Failure:
    if closed:  # a reload closed this adapter while a message was in flight
        return _Failure(TransientError, "the adapter was closed during the call")
    detail = type(exc).__name__
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
        return _Failure(TransientError, f"timed out after {timeout:g}s ({detail})")
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        requests.exceptions.ContentDecodingError)):
        return _Failure(TransientError, f"connection failed ({detail})")
    return _Failure(PermanentError, f"the request could not be sent ({detail})")


def _snippet(content: Any) -> str:
    if not isinstance(content, (bytes, str)) or not content:
        return ""
    text = content if isinstance(content, str) else content[: SNIPPET_CHARS * 4].decode("utf-8", "replace")
    return ": " + _short(" ".join(text.split()))


def _short(text: str) -> str:
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


# -- the wire ----------------------------------------------------------------------------------
class _Session(requests.Session):
    """requests, bounded: no redirects, a deadline on the whole response, a size limit."""

    def __init__(self, timeout: float):
        super().__init__()
        pool = HTTPAdapter(pool_connections=4, pool_maxsize=MAX_CONNECTIONS, max_retries=0)
        self.mount("http://", pool)
        self.mount("https://", pool)
        self._timeout = timeout

    def request(self, method, url, **kwargs):
        deadline = time.monotonic() + self._timeout
        kwargs.update(stream=True, allow_redirects=False,  # a redirected POST could become a GET
                      timeout=(min(MAX_CONNECT_TIMEOUT, self._timeout), self._timeout))
        response = super().request(method, url, **kwargs)
        try:
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise _Failure(PermanentError, f"hostile or malformed SOAP response: larger than "
                                                   f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB")
                if time.monotonic() > deadline:
                    raise _Failure(TransientError, f"timed out after {self._timeout:g}s reading the response")
                chunks.append(chunk)
            response._content = b"".join(chunks)  # what Response.content would have read
            response._content_consumed = True     # so close() returns the connection to the pool
        finally:
            response.close()
        return response


class _Transport(zeep.Transport):
    """zeep's transport, reading documents only from local files and posting through _Session."""

    def __init__(self, roots: Iterable[Path], timeout: float):
        super().__init__(timeout=timeout, operation_timeout=timeout, session=_Session(timeout))
        self.session.adapters.pop("file://", None)  # zeep mounts it; an endpoint is never a file
        self.session.headers["User-Agent"] = f"esb/{__version__}"
        self._close_session = True
        self._roots = [Path(r).absolute() for r in roots]
        self.local = threading.local()

    def load(self, url: str) -> bytes:
        path = next((p for p in (local_file(str(url), r) for r in self._roots) if p is not None), None)
        if path is None:
            raise zeep.exceptions.ExternalReferenceForbidden(str(url))
        if path.stat().st_size > MAX_WSDL_BYTES:
            raise ValueError(f"{path.name} is larger than {MAX_WSDL_BYTES // (1024 * 1024)} MiB")
        return path.read_bytes()

    def post_xml(self, address, envelope, headers):
        self.local.sent = True  # from here on a failure is the exchange's, not the request's
        response = super().post_xml(address, envelope, headers)
        self.local.status, self.local.head = response.status_code, response.content[: SNIPPET_CHARS * 4]
        return response


class _ReplyCheck(zeep.Plugin):
    """Vets a parsed reply before zeep reads it: zeep would take an HTTP error page for a fault
    without a code, and a Body holding some other element for an empty reply."""

    def __init__(self, transport: _Transport):
        self._local = transport.local

    def ingress(self, envelope, http_headers, operation):
        status = getattr(self._local, "status", 200)
        namespace = etree.QName(envelope).namespace if isinstance(envelope.tag, str) else None
        body = envelope.find(f"{{{namespace}}}Body") if namespace in _ENVELOPE_NAMESPACES else None
        children = [child for child in body if isinstance(child.tag, str)] if body is not None else []
        if children and children[0].tag == f"{{{namespace}}}Fault":
            return envelope, http_headers  # zeep raises it as a Fault
        if not 200 <= status < 300:
            raise _http_failure(status, self._local.head)
        expected = getattr(getattr(operation.output, "body", None), "qname", None)
        if body is None:
            raise _Failure(PermanentError, "hostile or malformed SOAP response: it is not a SOAP envelope")
        if expected is not None and (not children or children[0].tag != expected):
            found = etree.QName(children[0]).localname if children else "nothing"
            raise _Failure(PermanentError, f"hostile or malformed SOAP response: the Body holds {found}, "
                                           f"not {etree.QName(expected).localname}")
        return envelope, http_headers


# -- secrets in zeep's logs --------------------------------------------------------------------
class _Redactor(logging.Filter):
    """Masks WS-Security passwords in the records of zeep's loggers (it logs whole envelopes at DEBUG)."""

    def __init__(self):
        super().__init__()
        self._counts: collections.Counter[str] = collections.Counter()  # adapters may share a password
        self._secrets: tuple[str, ...] = ()  # longest first; replaced whole, so `filter` needs no lock
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._counts.update(secrets)
            self._secrets = tuple(sorted(self._counts, key=len, reverse=True))
        _attach(self)

    def remove(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._counts.subtract(secrets)
            self._counts = +self._counts
            self._secrets = tuple(sorted(self._counts, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's to report, not ours
            return True
        masked = _PASSWORD_ELEMENT.sub(rf"\g<1>{MASK}\g<2>", text)
        for secret in self._secrets:
            masked = masked.replace(secret, MASK)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


def _attach(redactor: _Redactor) -> None:
    """A logger's filters see only the records made on that logger, so each of zeep's gets one."""
    names = {"zeep", "zeep.transports", "zeep.wsdl.bindings.soap", "zeep.wsse", "zeep.client"}
    names.update(n for n in list(logging.Logger.manager.loggerDict) if n.startswith("zeep."))
    for name in names:
        logger = logging.getLogger(name)
        if redactor not in logger.filters:
            logger.addFilter(redactor)


_REDACTOR = _Redactor()


def _secret_forms(password: Any) -> tuple[str, ...]:
    """The password as configured and as it appears in an envelope (XML-escaped)."""
    if not password:
        return ()
    text = str(password)
    return tuple(sorted({text, escape(text, quote=False), escape(text)}, key=len, reverse=True))


# -- configuration -----------------------------------------------------------------------------



def _client(spec: AdapterSpec, wsdl: Path, transport: _Transport, wsse: Mapping[str, Any]) -> zeep.Client:
    settings = zeep.Settings(strict=True, forbid_external=True, forbid_dtd=True, forbid_entities=True,
                             xml_huge_tree=False)
    token = UsernameToken(str(wsse["username"]), str(wsse["password"])) if wsse else None
    try:
        return zeep.Client(str(wsdl), wsse=token, transport=transport, settings=settings,
                           plugins=[_ReplyCheck(transport)])
    except zeep.exceptions.ExternalReferenceForbidden as exc:
        raise ConfigError(f"the WSDL of '{spec.name}' refers to {exc.url}, "
                          "which is not a local file under the project root or beside the WSDL", path=spec.path,
                          hint="keep imported XSDs beside the WSDL; esb never fetches them") from None
    except (zeep.exceptions.Error, etree.LxmlError, OSError, ValueError, TypeError, LookupError) as exc:
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise ConfigError(f"the WSDL of '{spec.name}' cannot be loaded: {_short(detail)}", path=spec.path) from None


def _binding(spec: AdapterSpec, client: zeep.Client) -> tuple[SoapBinding, str]:
    services = client.wsdl.services
    service = services[_choose(spec, "service", list(services), "the WSDL")]
    soap_ports = [n for n, p in service.ports.items() if isinstance(p.binding, SoapBinding)]
    name = _choose(spec, "port", soap_ports, f"the service '{service.name}'")
    port = service.ports[name]
    address = spec.settings.get("address") or port.binding_options.get("address") or ""
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the adapter '{spec.name}' has no http(s) endpoint for port '{name}'", path=spec.path,
                          hint="set `address: https://host/path`")
    if parts.username or parts.password:  # never echo the URL: it holds a credential
        raise ConfigError(f"the adapter '{spec.name}' has a user name or password in its address", path=spec.path,
                          hint="put credentials under `wsse:`, from ${VAR}")
    return port.binding, address


def _choose(spec: AdapterSpec, key: str, names: list[str], where: str) -> str:
    wanted = spec.settings.get(key)
    if wanted is None and len(names) == 1:
        return names[0]
    if wanted is None:
        raise ConfigError(f"{where} of adapter '{spec.name}' has {len(names)} SOAP {key}s "
                          f"({', '.join(names) or 'none'})", path=spec.path, hint=f"name one with `{key}:`")
    if wanted not in names:
        raise ConfigError(f"{where} of adapter '{spec.name}' has no SOAP {key} '{wanted}'", path=spec.path,
                          hint=did_you_mean(str(wanted), names))
    return str(wanted)


def _operation(spec: AdapterSpec, binding: SoapBinding, name: str, wsdl_name: str) -> _Operation:
    operations = binding.all()
    if wsdl_name not in operations:
        raise ConfigError(f"the operation '{name}' of '{spec.name}' names '{wsdl_name}', which the WSDL binding "
                          "does not have", path=spec.path, hint=did_you_mean(wsdl_name, sorted(operations)))
    operation = operations[wsdl_name]
    request_type = getattr(getattr(operation.input, "body", None), "type", None)
    parameters = frozenset(n for n, _ in (*getattr(request_type, "elements", ()),
                                          *getattr(request_type, "attributes", ())))
    reply_type = getattr(getattr(operation.output, "body", None), "type", None)
    children = getattr(reply_type, "elements", None)
    single = children[0][0] if children is not None and len(children) == 1 and not reply_type.attributes else None
    return _Operation(name, wsdl_name, parameters, single, reply_type)
