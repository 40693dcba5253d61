"""The route model: frozen dataclasses built once by the loader."""

from __future__ import annotations

import dataclasses

from esb.steps.base import Step


@dataclasses.dataclass(frozen=True)
class HttpAuth:
    """How a webhook's sender proves itself: `hmac` (a signature over timestamp and body), `api_key`
    (a header) or `bearer` (Authorization: Bearer). `secret` is read from the variable `secret_env`."""

    kind: str
    secret_env: str
    secret: str | None = dataclasses.field(default=None, repr=False)  # None: the variable is not set
    header: str = ""  # hmac: the signature's header; api_key: the key's header
    timestamp_header: str = "X-Timestamp"  # hmac only
    window: float = 300.0  # hmac only: seconds a signed request stays valid either side of now


@dataclasses.dataclass(frozen=True)
class HttpSource:
    """A webhook: `esb run` serves `path`, and a request it accepts becomes a message on the route's queue."""

    path: str
    auth: HttpAuth
    idempotency_header: str = "Idempotency-Key"  # its value becomes the message id
    headers: tuple[str, ...] = ()  # request headers kept on the message besides the idempotency header
    rate: float | None = None  # requests per second per client; None: no limit
    burst: int | None = None


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A timetable that feeds a route (esb.runtime.schedule): a cron expression read in `timezone`,
    fired only on the days of `calendar` (none | weekdays | cn_workdays)."""

    cron: str
    timezone: str = "UTC"
    calendar: str = "none"
    catch_up: bool = False  # fire times missed while esb was down are emitted late (the last few)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a route's messages come from: its queue, bound to an exchange with a key (or fed by
    a schedule: no exchange, the scheduler publishes to the queue)."""

    queue: str
    exchange: str | None = None
    binding_key: str = "#"
    exchange_type: str = "topic"
    quorum: bool | None = None  # None: as broker.queues says (esb.runtime.topology.with_queue_settings)
    format: str = "json"
    delivery_limit: int | None = None  # the project's delivery.limit, set on its quorum queues
    http: HttpSource | None = None  # fed by webhooks (esb.inbound), published to `queue` by the default exchange
    schedule: Schedule | None = None


@dataclasses.dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    multiplier: float = 4.0
    max: float = 600.0

    def delays(self, attempts: int) -> tuple[float, ...]:
        """The wait before each redelivery, e.g. (1, 4, 16, ...), capped at `max`."""
        return tuple(min(self.initial * self.multiplier ** i, self.max) for i in range(max(attempts - 1, 0)))


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Redelivery policy: quick in-process tries, then delay tiers, then the dead-letter queue."""

    attempts: int = 5
    in_process: int = 3
    backoff: Backoff = Backoff()


@dataclasses.dataclass(frozen=True)
class Idempotency:
    """What names one business message: a JMESPath into the body, or a header."""

    key: str | None = None
    header: str | None = None


@dataclasses.dataclass(frozen=True)
class Ordering:
    """Messages with the same key (JMESPath into the body) run one at a time, in the order published;
    keys are spread over `partitions` queues, each consumed by one worker at a time."""

    key: str
    partitions: int = 8


@dataclasses.dataclass(frozen=True)
class Route:
    name: str
    source: Source
    steps: tuple[Step, ...]
    description: str = ""
    concurrency: int = 8
    idempotency: Idempotency | None = None
    retry: RetryPolicy = RetryPolicy()
    path: str = ""
    line: int = 1
    max_body_bytes: int | None = None  # None: the project's limits.max_body (Settings.max_body_bytes)
    ordering: Ordering | None = None

    def body_limit(self, default: int) -> int:
        """The largest body this route takes: its own max_body, else the project's `default`."""
        return default if self.max_body_bytes is None else self.max_body_bytes

    def walk(self):
        """Every step, nested ones included, depth first."""
        stack = list(reversed(self.steps))
        while stack:
            step = stack.pop()
            yield step
            for _, nested in reversed(step.branches()):
                stack.extend(reversed(nested))

    @property
    def adapters(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.adapter for s in self.walk() if s.kind == "to"))


def body_too_large(size: int, limit: int) -> str | None:
    """Why a body of `size` bytes is refused unread, or None when it fits in `limit`."""
    if size <= limit:
        return None
    return f"the body is {size:,} bytes, over the route's limit of {limit:,} (max_body)"
