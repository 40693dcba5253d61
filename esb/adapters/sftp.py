"""SFTP adapter: each operation puts the message body into one remote file, over a shared SSH connection.

Connection
    One SSH connection (paramiko) per adapter, opened on first use, shared by every thread of the
    process (calls take turns behind a lock) and reopened when the server dropped it: a call
    that fails on a reused connection with a connection error (not a timeout) is made once more
    on a new one before it counts as failed.
    host keys   only those pinned in `known_hosts` (read again at each connect); an unknown or a
                changed host key fails closed (PermanentError), it is never added.
    auth        `private_key` (an unencrypted Ed25519, ECDSA or RSA key file) and/or `password`;
                never an agent or ~/.ssh keys.
    timeout     `timeout` (default 30s) bounds the TCP connect, the SSH banner, authentication,
                opening the SFTP channel and waiting for each SFTP reply.

Operation `put` (`{put: "/outbox/{message_id}.xml", atomic: true}`)
    name        the template filled from `{message_id}` (the envelope's id) and top-level fields
                of a JSON body (`{claim_id}`). A value holding `/`, `..` or a control character
                (NUL included), or an empty value, is refused: it cannot leave its directory.
    content     a JSON body through esb.transform.jsoncodec (Decimals digit for digit), XML and
                text as UTF-8, bytes as they are.
    atomic      (default true) written to NAME.part, its size checked with stat, then renamed to
                NAME with posix-rename (replacing an older NAME), so the far side never sees half
                a file. With `atomic: false` the file is written under NAME and then checked.
    result      a Message with the same id and headers and the body {"path": NAME, "size": BYTES}.
    repeats     the remote name is the idempotency: a repeated call (a retry, a redelivery after a
                crash) writes the same name again, so `idempotency_key` is not sent anywhere.

Outcome
    connection refused or reset, a timeout, the connection dropped       TransientError; a .part
    mid-transfer, a size mismatch after upload, another SSH or SFTP error left behind is removed
                                                                         (best effort) at the
                                                                         next call
    an unknown or changed host key, failed authentication, no common    PermanentError
    algorithms, a missing remote directory, permission denied, a bad
    template value
Errors name the adapter, the operation and the path template (never the filled name, nor a
password); paramiko's exception is not chained.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import paramiko

from esb.adapters.spec import MASK, AdapterSpec, positive_seconds
from esb.errors import ConfigError, EsbError, PermanentError, ProcessingError, TransformError, TransientError
from esb.message import JSON, Message
from esb.transform import jsoncodec
from esb.transform.numbers import plain

DEFAULT_PORT = 22
DEFAULT_TIMEOUT = 30.0
PART_SUFFIX = ".part"
DETAIL_CHARS = 200

_FIELD = re.compile(r"\{([^{}]*)\}")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

T = TypeVar("T")


class _Failure(Exception):
    """An outcome decided inside the adapter, turned into an esb error once, at the edge."""

    def __init__(self, kind: type[ProcessingError], text: str):
        super().__init__(text)
        self.kind, self.text = kind, text


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, key: paramiko.PKey):
        super().__init__("no pinned host key")
        self.key = key


class _PinnedKeysOnly(paramiko.RejectPolicy):
    """Reject a host that known_hosts does not name, keeping its key to report the fingerprint."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(key)


class SftpConnection:
    """One SSH connection and its SFTP session to a configured server; thread-safe, reopened when dropped.

    `run(action, what)` calls `action(sftp)` on the open session and raises only esb errors.
    Shared by the adapter (uploads) and the inbound poller (downloads).
    """

    def __init__(self, spec: AdapterSpec, root: Path):
        settings = spec.settings
        self.name = spec.name
        self.host = str(settings["host"])
        self.port = int(settings.get("port") or DEFAULT_PORT)
        self.username = str(settings["username"])
        self.timeout = positive_seconds(spec, "timeout", spec.settings.get("timeout"), DEFAULT_TIMEOUT)
        self._known_hosts_name = str(settings["known_hosts"])
        self._known_hosts = _existing_file(spec, root, "known_hosts",
                                           "pin the server's host key there (ssh-keyscan, then check the "
                                           "fingerprint with the server's owner)")
        self._password = settings.get("password") or None
        self._pkey = _private_key(spec, root) if settings.get("private_key") else None
        if self._pkey is None and self._password is None:
            raise ConfigError(f"the adapter '{spec.name}' needs private_key or password", path=spec.path)
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._closed = False

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def run(self, action: Callable[[paramiko.SFTPClient], T], what: str) -> T:
        """`action(sftp)`, once more on a new connection when a reused one turns out to be dropped.

        Every action given is idempotent (an upload rewrites the same .part and renames it again),
        so repeating one after a connection error is safe. A timeout is not repeated.
        """
        with self._lock:
            for last in (False, True):
                if self._closed:
                    raise TransientError(f"{self.name}: {what}: the adapter is closed")
                reused = self._sftp is not None
                try:
                    return action(self._session())
                except _Failure as failure:
                    raise failure.kind(self._redact(f"{self.name}: {what}: {failure.text}")) from None
                except Exception as exc:  # noqa: BLE001 - every library error is translated here, once
                    error = self._translate(exc)
                    if isinstance(error, TransientError):
                        self._disconnect()
                        if reused and not last and not _timed_out(exc) and not self._closed:
                            continue  # a server dropping idle connections: not worth a failed call
                    raise type(error)(self._redact(f"{self.name}: {what}: {error.message}")) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close now, even during a call (a reload): that call fails as transient."""
        self._closed = True
        self._disconnect()

    # -- the session ---------------------------------------------------------------------------
    def _session(self) -> paramiko.SFTPClient:
        transport = self._client.get_transport() if self._client else None
        if self._sftp is not None and transport is not None and transport.is_active():
            return self._sftp
        self._disconnect()
        client = paramiko.SSHClient()
        started = time.monotonic()
        try:
            self._load_host_keys(client)
            client.set_missing_host_key_policy(_PinnedKeysOnly())
            client.connect(self.host, self.port, username=self.username, pkey=self._pkey, password=self._password,
                           timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout,
                           channel_timeout=self.timeout, allow_agent=False, look_for_keys=False)
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)
        except paramiko.SSHException as exc:
            client.close()
            # When negotiation outlasts its timeout, paramiko's connect returns as if it had
            # succeeded and the next step fails with "No existing session": call that a timeout.
            if type(exc) is paramiko.SSHException and time.monotonic() - started >= self.timeout:
                raise TimeoutError(f"no SSH session within {self.timeout:g}s") from None
            raise
        except BaseException:
            client.close()
            raise
        if self._closed:  # close() ran while this connection was being opened
            client.close()
            raise TransientError("the adapter was closed during the call")
        self._client, self._sftp = client, sftp
        return sftp

    def _load_host_keys(self, client: paramiko.SSHClient) -> None:
        try:
            client.load_host_keys(str(self._known_hosts))
        except OSError as exc:
            raise _Failure(PermanentError, f"cannot read {self._known_hosts_name}: {exc.strerror or exc}") from None

    def _disconnect(self) -> None:
        client, self._client, self._sftp = self._client, None, None
        if client is not None:
            client.close()

    # -- translating paramiko ------------------------------------------------------------------
    def _translate(self, exc: Exception) -> ProcessingError:
        if self._closed:
            return TransientError("the adapter was closed during the call")
        if isinstance(exc, EsbError):
            return exc if isinstance(exc, ProcessingError) else PermanentError(str(exc))
        if isinstance(exc, _UnknownHostKey):
            return PermanentError(self._host_key_text(exc.key, None))
        if isinstance(exc, paramiko.BadHostKeyException):
            return PermanentError(self._host_key_text(exc.key, exc.expected_key))
        if isinstance(exc, paramiko.AuthenticationException):
            return PermanentError(f"authentication as '{self.username}' at {self.where} failed ({_detail(exc)}); "
                                  "check the key or password the adapter is given and that the server accepts it")
        if isinstance(exc, paramiko.ssh_exception.IncompatiblePeer):
            return PermanentError(f"{self.where} shares no SSH algorithm with esb ({_detail(exc)})")
        if isinstance(exc, (FileNotFoundError, PermissionError)):  # SFTP status replies: the session is fine
            return PermanentError(f"the server refused: {_detail(exc)}")
        if _timed_out(exc):
            return TransientError(f"timed out after {self.timeout:g}s talking to {self.where} ({_detail(exc)})")
        if isinstance(exc, (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError)):
            return TransientError(f"the connection to {self.where} failed ({_detail(exc)})")
        return TransientError(f"the exchange with {self.where} failed ({_detail(exc)})")

    def _host_key_text(self, offered: paramiko.PKey, pinned: paramiko.PKey | None) -> str:
        why = (f"it offers {_fingerprint(offered)} but {_fingerprint(pinned)} is pinned" if pinned
               else f"no key is pinned for it; it offers {_fingerprint(offered)}")
        return (f"the host key of {self.where} does not match {self._known_hosts_name} ({why}); refusing to "
                "connect: confirm the fingerprint with the server's owner before pinning a new key")

    def _redact(self, text: str) -> str:
        return text.replace(self._password, MASK) if self._password else text


class SftpAdapter:
    """One configured SFTP server; thread-safe, one connection, opened once per process."""

    def __init__(self, spec: AdapterSpec, root: Path):
        self.name = spec.name
        self._operations = {name: _operation(spec, name, op) for name, op in spec.operations.items()}
        self._connection = SftpConnection(spec, root)
        self._leftovers: set[str] = set()  # .part files of failed uploads; guarded by the connection's lock

    def call(self, operation: str, message: Message, *, idempotency_key: str) -> Message:
        op = self._operations.get(operation)
        if op is None:
            raise PermanentError(f"{self.name}: no operation '{operation}' "
                                 f"(the adapter has {', '.join(sorted(self._operations))})")
        what = f"{operation} (put {op['put']})"
        try:
            path = _render(op["put"], message)
            data = _content(message)
        except _Failure as failure:
            raise failure.kind(f"{self.name}.{what}: {failure.text}") from None
        size = self._connection.run(lambda sftp: self._upload(sftp, path, data, op["atomic"]), what)
        return message.with_body({"path": path, "size": size}, JSON)

    def close(self) -> None:
        self._connection.close()

    def __repr__(self) -> str:
        return f"SftpAdapter({self.name!r})"

    def _upload(self, sftp: paramiko.SFTPClient, path: str, data: bytes, atomic: bool) -> int:
        self._remove_leftovers(sftp)
        target = path + PART_SUFFIX if atomic else path
        if atomic:
            self._leftovers.add(target)
        sftp.putfo(io.BytesIO(data), target, file_size=len(data), confirm=False)
        size = sftp.stat(target).st_size
        if size != len(data):
            raise _Failure(TransientError, f"the server holds {size} of the {len(data)} bytes written")
        if atomic:
            try:
                sftp.posix_rename(target, path)
            except FileNotFoundError:
                raise _Failure(TransientError, "the uploaded .part file vanished before the rename") from None
            self._leftovers.discard(target)
        return size

    def _remove_leftovers(self, sftp: paramiko.SFTPClient) -> None:
        """Remove the .part files that failed uploads left, best effort."""
        for path in sorted(self._leftovers):
            try:
                sftp.remove(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            self._leftovers.discard(path)


# -- building the file -------------------------------------------------------------------------
def _render(template: str, message: Message) -> str:
    return _FIELD.sub(lambda m: _name_part(m.group(1), _lookup(message, m.group(1))), template)


def _lookup(message: Message, name: str) -> Any:
    if name == "message_id":
        return message.message_id
    if not isinstance(message.body, Mapping):
        raise _Failure(PermanentError, f"the field '{name}' is needed but the body is not a JSON object")
    if name not in message.body:
        raise _Failure(PermanentError, f"the body has no field '{name}'")
    return message.body[name]


def _name_part(name: str, value: Any) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise _Failure(PermanentError, f"the field '{name}' is {type(value).__name__}, not a text or a number")
    text = plain(value, f"the field '{name}'") if isinstance(value, Decimal) else str(value)
    if text in ("", ".") or "/" in text or ".." in text or _CONTROL.search(text):
        raise _Failure(PermanentError, f"the field '{name}' cannot be part of a remote file name: it is empty "
                                       "or '.', or holds '/', '..' or a control character")
    return text


def _content(message: Message) -> bytes:
    body = message.body
    if message.is_json:
        try:
            return jsoncodec.dumps(body).encode("utf-8")
        except TransformError as exc:
            raise _Failure(TransformError, f"cannot write the body as JSON: {exc.message}") from None
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if body is None:
        return b""
    raise _Failure(TransformError, f"a {type(body).__name__} body cannot be written as {message.content_type}")


# -- configuration -----------------------------------------------------------------------------
def _operation(spec: AdapterSpec, name: str, config: Mapping[str, Any]) -> dict:
    template = str(config["put"])
    rest = _FIELD.sub("", template)
    bad = [f for f in _FIELD.findall(template) if not _FIELD_NAME.match(f)]
    if "{" in rest or "}" in rest or bad:
        raise ConfigError(f"the operation '{name}' of '{spec.name}' has a malformed template '{template}'",
                          path=spec.path, hint="write {message_id} or {field} (a top-level field of the body)")
    if template.endswith("/") or not template.strip():
        raise ConfigError(f"the operation '{name}' of '{spec.name}' puts to '{template}', which names no file",
                          path=spec.path)
    return {"put": template, "atomic": config.get("atomic", True) is not False}


def _existing_file(spec: AdapterSpec, root: Path, key: str, hint: str) -> Path:
    path = root / str(spec.settings[key])
    if not path.is_file():
        raise ConfigError(f"the adapter '{spec.name}' names a {key} file that does not exist: "
                          f"{spec.settings[key]}", path=spec.path, hint=hint)
    return path


_ENCRYPTED = "is encrypted with a passphrase; give esb an unencrypted key readable only by it"
_UNREADABLE = "cannot be read as an Ed25519, ECDSA or RSA private key"


def _private_key(spec: AdapterSpec, root: Path) -> paramiko.PKey:
    """Load the key at open time; its path is a secret setting, so no message shows it."""
    path = root / str(spec.settings["private_key"])
    problem = None
    try:
        return paramiko.PKey.from_path(path)
    except FileNotFoundError:
        problem = "does not exist"
    except paramiko.PasswordRequiredException:
        problem = _ENCRYPTED
    except TypeError as exc:  # cryptography's word for an OpenSSH-format key with a passphrase
        problem = _ENCRYPTED if "password" in str(exc).lower() else _UNREADABLE
    except (OSError, paramiko.SSHException, ValueError, UnicodeDecodeError):
        problem = _UNREADABLE
    raise ConfigError(f"the private_key file of adapter '{spec.name}' {problem}", path=spec.path)



def _fingerprint(key: paramiko.PKey) -> str:
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode("ascii").rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def _timed_out(exc: BaseException | None) -> bool:
    """paramiko turns a banner timeout into an SSHException raised while handling the TimeoutError."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, TimeoutError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text[:DETAIL_CHARS]}" if text else name
