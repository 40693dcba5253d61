"""Dead letters and other one-off broker chores of the CLI: browse, find, replay, purge, status, publish.

Each call opens a short-lived connection (a pika BlockingConnection for amqp://, a kombu
Connection for any other transport) and closes it before it returns. Reading without removing
is basic.get without an ack, then giving back what was fetched: RabbitMQ puts a fetched,
unacked message back in its place when its channel closes (closing, not rejecting: a reject
counts as a failed delivery on a quorum queue with a delivery limit); kombu's memory transport
does not restore on close (`do_restore = False`), so held messages are requeued explicitly,
at the tail. Every walk through a queue is bounded by its depth when the walk began, so a
message put back or newly dead-lettered is never read twice and the walk always ends.

A replay republishes the original message (body, content type, headers, message id) to the
route's queue, persistent, mandatory and confirmed, and only then acks the dead letter: a
failure leaves it where it was. A replayed message goes through the route's idempotency like
any other (the store's "dead" record may be claimed again).
"""

from __future__ import annotations

import dataclasses
import datetime
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Protocol

from esb.errors import EsbError
from esb.runtime import names
from esb.runtime.broker import Delivery, NotConfirmed, Outgoing, Unroutable
from esb.runtime.envelope import message_id_of, user_headers, wire_headers
from esb.runtime.state import RetryState, Seal, read_generations, state_headers
from esb.runtime.topology import retry_delays_ms

Progress = Callable[[int, int], None]
MASK = "***"


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One message of `<route>.dlq`: the original message and why it died."""

    id: str
    route: str
    step: str                    # label of the failed step
    error_class: str             # transient, permanent, validation, transform, business, retries_exhausted
    exception: str
    reason: str
    attempts: int
    first_failure: str
    last_failure: str
    compensation: str            # ok, failed: <why>, or none
    resume_step: int             # index of the failed (top-level) step
    body: bytes                  # the original body, as the source sent it
    content_type: str
    headers: Mapping[str, Any]   # the original user headers, without x-esb-*
    failed_body: bytes | None = None          # the body as it stood at the failed step
    failed_content_type: str | None = None
    generations: Mapping[str, int] = dataclasses.field(default_factory=dict)  # step -> key generation a replay uses
    authentic: bool = True       # sealed by esb; else only its body and plain headers are believed

    @property
    def age(self) -> datetime.timedelta | None:
        """Time since the last failure; None when the header is missing or unreadable."""
        try:
            then = datetime.datetime.fromisoformat(self.last_failure)
        except ValueError:
            return None
        if then.tzinfo is None:
            then = then.replace(tzinfo=datetime.UTC)
        return datetime.datetime.now(datetime.UTC) - then

    @classmethod
    def from_delivery(cls, delivery: Delivery, seal: Seal, route: str) -> DeadLetter:
        """The dead letter in `delivery`, believed only if esb sealed it for `route`: anything else
        in a DLQ (published there by hand, or forged) is a plain message, its esb headers ignored."""
        h = delivery.headers or {}
        message_id = message_id_of(delivery)
        if not seal.verify(route, message_id, delivery.body, h):
            return cls(id=message_id, route=route, step="", error_class="unsealed", exception="",
                       reason="not dead-lettered by esb: its esb headers carry no valid seal and are ignored",
                       attempts=0, first_failure="", last_failure="", compensation="", resume_step=0,
                       body=bytes(delivery.body), content_type=delivery.content_type or "application/octet-stream",
                       headers=MappingProxyType(user_headers(h)), authentic=False)
        return cls(
            id=message_id_of(delivery), route=_text(h.get(names.DLQ_ROUTE)),
            step=_text(h.get(names.DLQ_STEP)), error_class=_text(h.get(names.DLQ_ERROR_CLASS)),
            exception=_text(h.get(names.DLQ_EXCEPTION)), reason=_text(h.get(names.DLQ_REASON)),
            attempts=_int(h.get(names.DLQ_ATTEMPTS)), first_failure=_text(h.get(names.FIRST_FAILURE)),
            last_failure=_text(h.get(names.DLQ_LAST_FAILURE)), compensation=_text(h.get(names.DLQ_COMPENSATION)),
            resume_step=_int(h.get(names.RESUME_STEP)), body=bytes(delivery.body),
            content_type=delivery.content_type or "application/octet-stream",
            headers=MappingProxyType(user_headers(h)), failed_body=_bytes(h.get(names.DLQ_STATE_BODY)),
            failed_content_type=_text(h.get(names.DLQ_STATE_CONTENT_TYPE)) or None,
            generations=MappingProxyType(read_generations(h.get(names.GENERATIONS))))


@dataclasses.dataclass(frozen=True)
class RouteStatus:
    """A route's queues on the broker; None where a queue does not exist (yet)."""

    route: str
    queue: str
    messages: int | None
    consumers: int | None
    dead_letters: int | None
    retrying: int            # messages waiting in the route's retry tiers


class ReplayFailed(EsbError):
    """A republish was not confirmed: that dead letter and the ones after it stay in the DLQ."""

    def __init__(self, message: str, replayed: int):
        super().__init__(message)
        self.replayed = replayed


# -- the engine -------------------------------------------------------------------------------

def browse(url: str, route: str, limit: int | None = 1000, *, seal: Seal) -> list[DeadLetter]:
    """The dead letters of `route`, oldest first, left in place."""
    queue = names.dead_letter_queue(route)
    with _session(url) as session:
        count = _depth_or_fail(session, queue, url)
        try:
            return [DeadLetter.from_delivery(d, seal, route) for d in _fetch(session, queue, _cap(count, limit))]
        finally:
            session.give_back()


def find(url: str, routes: Iterable[str], message_id: str, *, seal: Seal) -> DeadLetter | None:
    """The dead letter with this message id in the DLQ of any of `routes`, left in place."""
    for route in routes:
        with _session(url) as session:
            if session.depth(names.dead_letter_queue(route)) is None:
                continue
        found = next((letter for letter in browse(url, route, None, seal=seal) if letter.id == message_id), None)
        if found is not None:
            return found
    return None


def replay(url: str, route: str, *, ids: Iterable[str] | None = None, replay_all: bool = False,
           from_step: str | None = None, route_model=None, progress: Progress | None = None, seal: Seal) -> int:
    """Republish dead letters of `route` (those with `ids`, or all) to its queue; how many moved.

    With `from_step`, each goes back with the body it had at its failed step and the retry
    state that makes the route resume there; only the failed step may be named.
    """
    wanted = set(ids or ())
    if not wanted and not replay_all:
        raise EsbError("say which dead letters to replay: give message ids, or all")
    if from_step is not None:
        for letter in _matching(browse(url, route, None, seal=seal), wanted):
            _check_resumable(letter, from_step, route_model)
    target = route_model.source.queue if route_model is not None else names.route_queue(route)
    return _move(url, route, wanted, lambda letter: ("", target, _replayed(letter, from_step, route_model, seal)),
                 progress, seal)


def purge(url: str, route: str, ids: Iterable[str] | None = None, *, seal: Seal) -> int:
    """Delete the dead letters of `route`: all of them, or those with the given ids; how many went."""
    queue = names.dead_letter_queue(route)
    if ids is None:
        with _session(url) as session:
            _depth_or_fail(session, queue, url)
            return session.purge(queue)
    wanted = set(ids)
    return _move(url, route, wanted, lambda letter: None, None, seal) if wanted else 0


def status(url: str, project) -> list[RouteStatus]:
    """Queue depth, consumers, dead letters and retrying messages of every route of `project`."""
    with _session(url) as session:
        return [_route_status(session, route) for route in project.routes.values()]


def publish(url: str, exchange: str, routing_key: str, message: Outgoing) -> None:
    """Publish one message, persistent and mandatory; return once the broker confirmed it."""
    with _session(url) as session:
        session.publish(exchange, routing_key, message)


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, fit to print."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:{MASK}@{host}{slash}{path}"


# -- helpers ----------------------------------------------------------------------------------

def _move(url: str, route: str, wanted: set[str], destination, progress: Progress | None, seal: Seal) -> int:
    """Take matching dead letters off the DLQ: republish each to `destination(letter)` (None: drop),
    ack it once confirmed; give every other message back untouched."""
    queue = names.dead_letter_queue(route)
    moved, by_id = 0, bool(wanted)
    with _session(url) as session:
        count = _depth_or_fail(session, queue, url)
        total = len(wanted) if by_id else count
        try:
            for delivery in _fetch(session, queue, count):
                letter = DeadLetter.from_delivery(delivery, seal, route)
                if wanted and letter.id not in wanted:
                    continue  # held until the end, then given back
                _send(session, destination(letter), letter, moved, queue)
                session.ack(delivery)
                moved += 1
                wanted.discard(letter.id)
                if progress is not None:
                    progress(moved, total)
                if by_id and not wanted:
                    break
        finally:
            session.give_back()
    return moved


def _send(session, where: tuple[str, str, Outgoing] | None, letter: DeadLetter, moved: int, queue: str) -> None:
    if where is None:
        return
    exchange, routing_key, message = where
    try:
        session.publish(exchange, routing_key, message)
    except EsbError as exc:
        raise ReplayFailed(f"replayed {moved}; {letter.id} stays in {queue}: {exc}", moved) from None


def _replayed(letter: DeadLetter, from_step: str | None, route_model, seal: Seal) -> Outgoing:
    """The message a replay sends: the original, sealed with the state that makes the route run it
    from the start (or resume at the failed step) and with the key generations of its effects, so
    that an effect compensated when it died is made anew under a new key. A dead letter esb did
    not seal goes back as the plain message it is."""
    if not letter.authentic and from_step is None:
        return Outgoing(letter.body, letter.content_type, wire_headers(letter.headers), letter.id)
    if from_step is None:
        state = RetryState(1, 0, (), None, letter.body, letter.content_type, letter.headers,
                           generations=dict(letter.generations))
        body, content_type = letter.body, letter.content_type
    else:
        _check_resumable(letter, from_step, route_model)
        state = RetryState(1, letter.resume_step, (), None, letter.body, letter.content_type, letter.headers,
                           generations=dict(letter.generations))
        body, content_type = letter.failed_body, letter.failed_content_type or letter.content_type
    headers = wire_headers({**letter.headers, **state_headers(state)})
    route = route_model.name if route_model is not None else letter.route
    return Outgoing(body, content_type, seal.sealed(route, letter.id, body, headers), letter.id)


def _check_resumable(letter: DeadLetter, from_step: str, route_model) -> None:
    """A dead letter's state is known only at its failed step, and only if nothing was undone."""
    if not letter.authentic:
        raise EsbError(f"dead letter {letter.id} was not dead-lettered by esb: replay it from the start")
    if from_step != letter.step:
        raise EsbError(f"dead letter {letter.id} failed at step '{letter.step}', not '{from_step}': it can "
                       f"resume only there (--from-step {letter.step}), or replay from the start")
    if letter.failed_body is None:
        raise EsbError(f"dead letter {letter.id} holds no state for step '{letter.step}': replay it from the start")
    if letter.compensation not in ("", "none"):
        raise EsbError(f"the steps before '{letter.step}' of dead letter {letter.id} were compensated when it "
                       f"died (compensation: {letter.compensation}): replay it from the start")
    if route_model is not None and not _step_is_at(route_model, letter.resume_step, from_step):
        raise EsbError(f"route {route_model.name} changed since dead letter {letter.id} died: step "
                       f"{letter.resume_step} is no longer '{from_step}'; replay it from the start")


def _step_is_at(route_model, index: int, label: str) -> bool:
    """The failed step is the top-level step at `index`, or nested in it (a choice's branch)."""
    if not 0 <= index < len(route_model.steps):
        return False
    step = route_model.steps[index]
    return step.label == label or any(s.label == label for _, nested in step.branches() for s in nested)


def _matching(letters: list[DeadLetter], wanted: set[str]) -> list[DeadLetter]:
    return [letter for letter in letters if not wanted or letter.id in wanted]


def _route_status(session, route) -> RouteStatus:
    main = session.depth(route.source.queue)
    dead = session.depth(names.dead_letter_queue(route.name))
    tiers = [session.depth(names.retry_queue(route.name, ms)) for ms in sorted(set(retry_delays_ms(route)))]
    return RouteStatus(route.name, route.source.queue, main[0] if main else None, main[1] if main else None,
                       dead[0] if dead else None, sum(tier[0] for tier in tiers if tier))


def _fetch(session, queue: str, count: int) -> Iterator[Delivery]:
    """At most `count` messages of `queue`, each held unacked by the session."""
    for _ in range(count):
        delivery = session.get(queue)
        if delivery is None:
            return
        yield delivery


def _depth_or_fail(session, queue: str, url: str) -> int:
    depth = session.depth(queue)
    if depth is None:
        raise EsbError(f"there is no queue '{queue}' on {mask_url(url)}: has its route run on this broker?")
    return depth[0]


def _cap(count: int, limit: int | None) -> int:
    return count if limit is None else min(count, limit)


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    try:
        return int(_text(value) or 0)
    except ValueError:
        return 0


def _bytes(value: Any) -> bytes | None:
    """pika hands back a header's bytes as str when they are valid UTF-8."""
    if value is None:
        return None
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _scrub(text: str, url: str) -> str:
    password = urllib.parse.urlsplit(url).password
    if not password:
        return text
    return text.replace(password, MASK).replace(urllib.parse.unquote(password), MASK)


# -- sessions: one short-lived connection -----------------------------------------------------

class _Session(Protocol):
    def depth(self, queue: str) -> tuple[int, int] | None: ...
    def get(self, queue: str) -> Delivery | None: ...
    def ack(self, delivery: Delivery) -> None: ...
    def give_back(self) -> None: ...
    def publish(self, exchange: str, routing_key: str, message: Outgoing) -> None: ...
    def purge(self, queue: str) -> int: ...
    def close(self) -> None: ...


@contextmanager
def _session(url: str) -> Iterator[_Session]:
    session = _PikaSession(url) if url.startswith(("amqp://", "amqps://")) else _KombuSession(url)
    try:
        yield session
    finally:
        session.close()


class _PikaSession:
    def __init__(self, url: str):
        import pika
        import pika.exceptions
        self._pika, self._errors = pika, pika.exceptions
        params = pika.URLParameters(url)
        params.connection_attempts, params.socket_timeout = 2, 10
        try:
            self._connection = pika.BlockingConnection(params)
        except self._errors.AMQPError as exc:
            raise EsbError(f"cannot connect to {mask_url(url)}: {_scrub(repr(exc), url)}") from None
        self._reader = None
        self._publisher = None

    def depth(self, queue: str) -> tuple[int, int] | None:
        channel = self._connection.channel()  # a failed passive declare closes its channel
        try:
            ok = channel.queue_declare(queue, passive=True)
        except self._errors.ChannelClosedByBroker:
            return None
        finally:
            if channel.is_open:
                channel.close()
        return ok.method.message_count, ok.method.consumer_count

    def get(self, queue: str) -> Delivery | None:
        if self._reader is None:
            self._reader = self._connection.channel()
        method, properties, body = self._reader.basic_get(queue, auto_ack=False)
        if method is None:
            return None
        return Delivery(body, properties.content_type, properties.headers or {}, properties.message_id,
                        queue, method.redelivered, method.delivery_tag)

    def ack(self, delivery: Delivery) -> None:
        self._reader.basic_ack(delivery.tag)

    def give_back(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader.is_open:
            reader.close()

    def publish(self, exchange: str, routing_key: str, message: Outgoing) -> None:
        if self._publisher is None or not self._publisher.is_open:
            self._publisher = self._connection.channel()
            self._publisher.confirm_delivery()
        properties = self._pika.BasicProperties(delivery_mode=2, content_type=message.content_type,
                                                headers=dict(message.headers), message_id=message.message_id)
        try:
            self._publisher.basic_publish(exchange, routing_key, message.body, properties, mandatory=True)
        except self._errors.UnroutableError:
            raise Unroutable(_unroutable(exchange, routing_key)) from None
        except self._errors.NackError:
            raise NotConfirmed("the broker refused the message (nack)") from None
        except self._errors.ChannelClosedByBroker as exc:
            raise EsbError(f"the broker refused the publish: {exc.reply_text}") from None

    def purge(self, queue: str) -> int:
        channel = self._connection.channel()
        try:
            return channel.queue_purge(queue).method.message_count
        finally:
            if channel.is_open:
                channel.close()

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()


class _KombuSession:
    def __init__(self, url: str):
        import kombu
        self._kombu = kombu
        self._connection = kombu.Connection(url, transport_options={"confirm_publish": True})
        try:
            self._connection.connect()
        except self._connection.connection_errors as exc:
            self._connection.release()
            raise EsbError(f"cannot connect to {mask_url(url)}: {_scrub(repr(exc), url)}") from None
        self._channel = self._connection.channel()
        self._held: dict[int, Any] = {}

    def depth(self, queue: str) -> tuple[int, int] | None:
        from kombu.exceptions import ChannelError
        channel = self._connection.channel()  # on some transports a failed passive declare closes it
        try:
            _, messages, consumers = channel.queue_declare(queue, passive=True)
        except (ChannelError, *self._connection.channel_errors):
            return None
        finally:
            channel.close()
        return messages, consumers

    def get(self, queue: str) -> Delivery | None:
        message = self._kombu.Queue(queue, channel=self._channel).get(no_ack=False, accept=None)
        if message is None:
            return None
        self._held[id(message)] = message
        return Delivery(message.body, message.content_type, message.headers or {},
                        message.properties.get("message_id"), queue,
                        bool(message.delivery_info.get("redelivered")), message)

    def ack(self, delivery: Delivery) -> None:
        self._held.pop(id(delivery.tag), None)
        delivery.tag.ack()

    def give_back(self) -> None:
        held, self._held = self._held, {}
        for message in held.values():  # in the order they were fetched
            message.requeue()

    def publish(self, exchange: str, routing_key: str, message: Outgoing) -> None:
        if not self._routable(exchange, routing_key):
            raise Unroutable(_unroutable(exchange, routing_key))
        self._kombu.Producer(self._channel).publish(
            message.body, exchange=exchange, routing_key=routing_key, headers=dict(message.headers),
            content_type=message.content_type, content_encoding="binary", delivery_mode=2,
            message_id=message.message_id, mandatory=True)

    def _routable(self, exchange: str, routing_key: str) -> bool:
        channel = self._channel
        if not hasattr(channel, "_has_queue"):
            return True  # not a virtual transport: the broker itself returns what it cannot route
        if not exchange:
            return channel._has_queue(routing_key)
        try:
            return bool(channel.typeof(exchange).lookup(channel.get_table(exchange), exchange, routing_key, None))
        except KeyError:
            return False

    def purge(self, queue: str) -> int:
        return self._channel.queue_purge(queue) or 0

    def close(self) -> None:
        self.give_back()
        self._connection.release()


def _unroutable(exchange: str, routing_key: str) -> str:
    where = f"exchange '{exchange}'" if exchange else "the default exchange (no such queue)"
    return f"nothing is bound to {where} for key '{routing_key}': the broker returned the message"
