"""The protocol every adapter kind implements, and the registry that opens one from its spec."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from esb.adapters.spec import AdapterSpec
from esb.errors import ConfigError
from esb.loading.registry import Registry
from esb.message import Message


class Adapter(Protocol):
    """A configured endpoint, opened once and shared by every worker thread of a process.

    `call` runs one named operation and returns the response as a message (same message id and
    headers). It raises only esb errors: TransientError when retrying may help (timeouts,
    connection errors, 5xx, 429), PermanentError when it cannot (4xx, a bad request or response).
    `idempotency_key` names this side effect (message key + step): the adapter hands it to the
    other system so that a repeated call after a crash is recognised there.
    Implementations must be safe to call from many threads at once.
    """

    def call(self, operation: str, message: Message, *, idempotency_key: str) -> Message: ...

    def close(self) -> None: ...


ADAPTER_IMPLS = Registry("adapter kind", {
    "rest": "esb.adapters.rest:RestAdapter",
    "soap": "esb.adapters.soap:SoapAdapter",
    "sftp": "esb.adapters.sftp:SftpAdapter",
})


def open_adapter(spec: AdapterSpec, root: Path) -> Adapter:
    """Build the adapter for `spec` (files such as a CA bundle are relative to `root`)."""
    if spec.kind not in ADAPTER_IMPLS:
        raise ConfigError(f"the adapter '{spec.name}' cannot be opened: {ADAPTER_IMPLS.unknown(spec.kind)}",
                          path=spec.path)
    return ADAPTER_IMPLS.get(spec.kind)(spec, root)
