"""The state esb carries on the wire between attempts, sealed so that only esb can have written it.

A retried message carries its state in `x-esb-*` headers (attempt, resume step, compensation
records, the original message, the idempotency key, the key generations of its effects); a dead
letter carries why it died and the original message. A publisher can set any header, so those
headers are believed only under an HMAC-SHA256 seal (`x-esb-seal`) over the route, the message
id, the body and every `x-esb-*` header, made with a key only esb holds. Why a seal and not the
store: pure routes run without a store, the seal costs nothing when there is no state (every
first attempt), and the dead letters that `esb dlq` reads must prove themselves without one.

A delivery whose esb headers are not sealed by our key is a new message: its esb headers are
dropped and it runs from its first step. The key comes from `security.state_key` in
config/esb.yaml (`ESB_SECURITY_STATE_KEY`); without one, a random key is made once in
`var/state.key` (mode 0600): right for one machine, while workers on several machines must share
one configured key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esb.runtime import names
from esb.runtime.broker import Delivery
from esb.transform import jsoncodec

KEY_FILE = "var/state.key"
_MIN_KEY_BYTES = 16


@dataclasses.dataclass(frozen=True)
class RetryState:
    """What travels with a message between attempts so that a retry resumes where it failed."""

    attempt: int = 1
    resume_step: int = 0
    compensations: tuple = ()
    first_failure: str | None = None
    original_body: bytes | None = None
    original_content_type: str | None = None
    original_headers: Mapping[str, Any] | None = None
    key: str | None = None
    generations: Mapping[str, int] = dataclasses.field(default_factory=dict)
    busy: int = 0  # times this copy found its key held by another worker

    @property
    def is_first(self) -> bool:
        return self is FIRST_ATTEMPT


FIRST_ATTEMPT = RetryState()  # frozen: one instance serves every message that is not a retry


class Seal:
    """Signs and checks esb's own headers with a key only esb holds."""

    def __init__(self, key: bytes):
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"the state key must be at least {_MIN_KEY_BYTES} bytes")
        self._key = key

    def sign(self, route: str, message_id: str, body: bytes, headers: Mapping[str, Any]) -> str:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (route, message_id, body):
            _feed(mac, part)
        for name in sorted(k for k in headers if _is_esb(k) and k != names.SEAL):
            _feed(mac, name)
            _feed(mac, headers[name])
        return mac.hexdigest()

    def sealed(self, route: str, message_id: str, body: bytes, headers: Mapping[str, Any]) -> dict:
        """`headers` with the seal over them added."""
        return {**headers, names.SEAL: self.sign(route, message_id, body, headers)}

    def verify(self, route: str, message_id: str, body: bytes, headers: Mapping[str, Any]) -> bool:
        seal = headers.get(names.SEAL)
        if isinstance(seal, str):
            seal = seal.encode("utf-8", "replace")  # compare_digest refuses non-ASCII text: compare bytes
        return isinstance(seal, bytes) and hmac.compare_digest(
            seal, self.sign(route, message_id, body, headers).encode("ascii"))


def carries_state(headers: Mapping[str, Any]) -> bool:
    return any(_is_esb(name) and name in names.INTERNAL_HEADERS for name in headers)


def read_state(delivery: Delivery, route: str, message_id: str, seal: Seal) -> tuple[RetryState, bool]:
    """The delivery's retry state and whether it was forged (esb headers without our seal)."""
    h = delivery.headers or {}
    if not carries_state(h):
        return FIRST_ATTEMPT, False
    if not seal.verify(route, message_id, delivery.body, h) or names.ATTEMPT not in h:
        return FIRST_ATTEMPT, True
    original_headers = h.get(names.ORIGINAL_HEADERS)
    return RetryState(
        attempt=int(h[names.ATTEMPT]), resume_step=int(h.get(names.RESUME_STEP, 0)),
        compensations=tuple(jsoncodec.loads(h.get(names.COMPENSATIONS) or "[]")),
        first_failure=text(h.get(names.FIRST_FAILURE)),
        original_body=_bytes(h.get(names.ORIGINAL_BODY)),
        original_content_type=text(h.get(names.ORIGINAL_CONTENT_TYPE)),
        original_headers=jsoncodec.loads(original_headers) if original_headers else None,
        key=text(h.get(names.IDEMPOTENCY_KEY)),
        generations=read_generations(h.get(names.GENERATIONS)),
        busy=int(h.get(names.BUSY, 0))), False


def state_headers(state: RetryState) -> dict:
    return {
        names.ATTEMPT: state.attempt, names.RESUME_STEP: state.resume_step,
        names.COMPENSATIONS: jsoncodec.dumps(list(state.compensations)),
        names.FIRST_FAILURE: state.first_failure or "",
        names.ORIGINAL_BODY: state.original_body or b"",
        names.ORIGINAL_CONTENT_TYPE: state.original_content_type or "",
        names.ORIGINAL_HEADERS: jsoncodec.dumps(dict(state.original_headers or {})),
        names.IDEMPOTENCY_KEY: state.key or "",
        names.GENERATIONS: jsoncodec.dumps(dict(state.generations)),
        names.BUSY: state.busy,
    }


def read_generations(value: Any) -> dict[str, int]:
    """{step label: generation} from a header; anything else is no generations."""
    try:
        loaded = jsoncodec.loads(_bytes(value) or b"{}")
    except Exception:  # noqa: BLE001 - a sealed header is ours; an unreadable one counts as none
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {str(k): int(v) for k, v in loaded.items() if isinstance(v, int) or str(v).isdigit()}


def load_key(root: Path, configured: str | None) -> Seal:
    """The seal of this project: the configured key, else one kept in var/state.key."""
    if configured:
        return Seal(configured.encode("utf-8"))
    path = root / KEY_FILE
    if not path.is_file():
        _make_key_file(path)
    return Seal(path.read_text().strip().encode("utf-8"))


def _make_key_file(path: Path) -> None:
    """Write a new random key whole, then link it into place: workers starting together all read
    the one key that won, never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another worker's key is in place: use that one
    finally:
        draft.unlink()


def _is_esb(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(names.HEADER_PREFIX)


def _feed(mac, value: Any) -> None:
    """Length-prefixed, so that no two different header sets feed the same bytes."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    mac.update(len(data).to_bytes(8, "big"))
    mac.update(data)


def text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value) if value not in (None, "") else None


def _bytes(value: Any) -> bytes | None:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return bytes(value) if value else None
