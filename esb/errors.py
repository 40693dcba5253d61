"""The one error tree of esb.

    EsbError
    ├── ConfigError          a bad asset file: carries path, line, column and a hint
    │   └── ConfigErrors     several ConfigErrors found in one pass (validate reports them all)
    └── ProcessingError      a message failed in a step: carries the step label
        ├── TransientError   worth retrying: timeouts, connection errors, 5xx, 429
        │   └── NotConfirmed      the broker refused a publish, or the connection dropped before its confirm
        └── PermanentError   retrying cannot help: goes to the dead-letter queue
            ├── Unroutable        the broker returned a publish: no queue is bound for it
            ├── ValidationError   the message does not match its schema
            ├── TransformError    a conversion or mapping could not be done
            └── BusinessError     a business rule does not hold (e.g. a statement does not reconcile)

Adapters translate library exceptions into this tree at the edge; nothing above them sees
a urllib3, zeep or paramiko exception.
"""

from __future__ import annotations


class EsbError(Exception):
    """Base of every error esb raises on purpose."""


class ConfigError(EsbError):
    """A problem in an asset file, reported as `path:line:col: what — how to fix`."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 col: int | None = None, hint: str | None = None):
        self.message = message
        self.path = path
        self.line = line
        self.col = col
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.path, self.line, self.col) if p is not None)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} — {self.hint}" if self.hint else text

    def sort_key(self) -> tuple:
        return (self.path or "", self.line or 0, self.col or 0, self.message)


class ConfigErrors(EsbError):
    """Several configuration problems, all reported at once."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = sorted(errors, key=ConfigError.sort_key)
        super().__init__("\n".join(str(e) for e in self.errors))


class ProcessingError(EsbError):
    """A message could not get through a step."""

    error_class = "error"

    def __init__(self, message: str, *, step: str | None = None, error_class: str | None = None):
        self.message = message
        self.step = step
        if error_class is not None:  # a finer class than the exception's own, for the dead letter
            self.error_class = error_class
        super().__init__(message)

    def at_step(self, label: str) -> ProcessingError:
        """Name the failing step, unless an inner step already did."""
        if self.step is None:
            self.step = label
        return self


class TransientError(ProcessingError):
    """Retrying later may succeed."""

    error_class = "transient"

    def __init__(self, message: str, *, step: str | None = None, retry_after: float | None = None):
        super().__init__(message, step=step)
        self.retry_after = retry_after


class PermanentError(ProcessingError):
    """Retrying cannot succeed; the message goes to the dead-letter queue."""

    error_class = "permanent"


class ValidationError(PermanentError):
    error_class = "validation"


class TransformError(PermanentError):
    error_class = "transform"


class BusinessError(PermanentError):
    error_class = "business"


class NotConfirmed(TransientError):
    """The broker refused (nacked) a publish, or the connection dropped before the confirm."""


class Unroutable(PermanentError):
    """The broker returned a mandatory publish: no queue is bound for it."""


def unroutable(exchange: str, routing_key: str) -> Unroutable:
    """The one wording of an unroutable publish, whichever broker returned it."""
    where = f"exchange '{exchange}'" if exchange else "the default exchange (there is no such queue)"
    return Unroutable(f"no queue is bound to {where} for key '{routing_key}': the broker returned the message")
