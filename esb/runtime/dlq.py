"""Dead letters: browse, find, replay and purge the `<route>.dlq` queues, through the Broker protocol.

Reading without removing is `get` without an ack, then `give_back_fetched` (see the protocol for
why it never rejects). Every walk through a queue is bounded by its depth when the walk began,
so a message put back or newly dead-lettered is never read twice and the walk always ends.

A replay republishes the original message (body, content type, headers, message id) to the
route's queue, persistent, mandatory and confirmed, and only then acks the dead letter: a
failure leaves it where it was. A replayed message goes through the route's idempotency like
any other (the store's "dead" record may be claimed again). Given a replay ledger
(esb.runtime.replays), a replay claims each dead letter there before sending it; one replayed
before stays in the DLQ and is reported, unless the caller says `again`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from esb.errors import EsbError
from esb.runtime import names
from esb.runtime.broker import Broker, Delivery, Outgoing, confirmed_publish
from esb.runtime.envelope import message_id_of, user_headers, wire_headers
from esb.runtime.replays import Replay, ReplayLedger
from esb.runtime.retry import now_iso
from esb.runtime.state import RetryState, Seal, read_generations, state_headers
from esb.runtime.urls import mask_url

Progress = Callable[[int, int], None]
CONFIRM_TIMEOUT = 30.0


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
    generations: Mapping[str, int] = dataclasses.field(default_factory=dict)  # step -> key generation to replay with
    authentic: bool = True       # sealed by esb; else only its body and plain headers are believed

    @property
    def died_at(self) -> datetime.datetime | None:
        """When it was dead-lettered (its last failure); None when unsealed or unreadable."""
        try:
            then = datetime.datetime.fromisoformat(self.last_failure)
        except ValueError:
            return None
        return then if then.tzinfo else then.replace(tzinfo=datetime.UTC)

    @property
    def age(self) -> datetime.timedelta | None:
        """Time since the last failure; None when the header is missing or unreadable."""
        then = self.died_at
        return None if then is None else datetime.datetime.now(datetime.UTC) - then

    @property
    def died(self) -> str:
        """Which death of this message it is: its sealed last-failure time (a message replayed that
        died again died later), or for a letter esb did not seal, a digest of its body."""
        if self.authentic and self.last_failure:
            return self.last_failure
        return "unsealed:" + hashlib.sha256(self.body).hexdigest()[:16]

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
            id=message_id, route=_text(h.get(names.DLQ_ROUTE)),
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
class Selection:
    """Which dead letters: those with these ids, error classes and failed steps (each empty: any),
    dead-lettered at or after `since`."""

    ids: frozenset[str] = frozenset()
    error_classes: frozenset[str] = frozenset()
    steps: frozenset[str] = frozenset()
    since: datetime.datetime | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return ((not self.ids or letter.id in self.ids)
                and (not self.error_classes or letter.error_class in self.error_classes)
                and (not self.steps or letter.step in self.steps)
                and (self.since is None or (letter.died_at is not None and letter.died_at >= self.since)))

    @property
    def is_everything(self) -> bool:
        return self == Selection()


@dataclasses.dataclass
class ReplayReport:
    """What a replay did (or, dry, would do)."""

    replayed: list[DeadLetter] = dataclasses.field(default_factory=list)
    skipped: list[tuple[DeadLetter, Replay]] = dataclasses.field(default_factory=list)  # replayed before
    missing: list[tuple[str, Replay | None]] = dataclasses.field(default_factory=list)  # ids not in the DLQ

    @property
    def count(self) -> int:
        return len(self.replayed)


class ReplayFailed(EsbError):
    """A republish was not confirmed: that dead letter and the ones after it stay in the DLQ."""

    def __init__(self, message: str, replayed: int, report: ReplayReport | None = None):
        super().__init__(message)
        self.replayed = replayed
        self.report = report


# -- the engine -------------------------------------------------------------------------------

def browse(broker: Broker, route: str, limit: int | None = 1000, *, seal: Seal) -> list[DeadLetter]:
    """The dead letters of `route`, oldest first, left in place."""
    queue = names.dead_letter_queue(route)
    count = _depth_or_fail(broker, queue)
    try:
        return [DeadLetter.from_delivery(d, seal, route) for d in _fetch(broker, queue, _cap(count, limit))]
    finally:
        broker.give_back_fetched()


def find(broker: Broker, routes: Iterable[str], message_id: str, *, seal: Seal) -> DeadLetter | None:
    """The dead letter with this message id in the DLQ of any of `routes`, left in place."""
    found = [letter for letter in candidates(broker, routes, message_id, seal=seal) if letter.id == message_id]
    return found[0] if found else None


def candidates(broker: Broker, routes: Iterable[str], prefix: str, *, seal: Seal) -> list[DeadLetter]:
    """The dead letters (left in place) in the DLQs of `routes` whose id is `prefix`, or if there is
    none, those whose id starts with it."""
    exact, starting = [], []
    for route in routes:
        if broker.queue_depth(names.dead_letter_queue(route)) is None:
            continue
        for letter in browse(broker, route, None, seal=seal):
            if letter.id == prefix:
                exact.append(letter)
            elif letter.id.startswith(prefix):
                starting.append(letter)
    return exact or starting


def replay(broker: Broker, route: str, *, ids: Iterable[str] | None = None, replay_all: bool = False,
           **options) -> int:
    """Republish dead letters of `route` (those with `ids`, or all) to its queue; how many moved.
    `options` are those of `replay_report`."""
    selection = Selection(ids=frozenset(ids or ()))
    if selection.is_everything and not replay_all:
        raise EsbError("say which dead letters to replay: give message ids, or all")
    return replay_report(broker, route, selection, **options).count


def replay_report(broker: Broker, route: str, selection: Selection, *, from_step: str | None = None,
                  route_model=None, progress: Progress | None = None, seal: Seal,
                  ledger: ReplayLedger | None = None, again: bool = False, user: str = "") -> ReplayReport:
    """Republish the selected dead letters of `route` to its queue, at most one copy per id named.

    With `from_step`, each goes back with the body it had at its failed step and the retry state
    that makes the route resume there; only the failed step may be named. With a `ledger`, a dead
    letter replayed before is left in the DLQ and reported as skipped, unless `again`.
    """
    if from_step is not None:
        for letter in browse(broker, route, None, seal=seal):
            if selection.matches(letter):
                _check_resumable(letter, from_step, route_model)
    target = route_model.source.queue if route_model is not None else names.route_queue(route)
    queue, report, at = names.dead_letter_queue(route), ReplayReport(), now_iso()
    found, sent = set(), set()  # ids seen in the DLQ, ids sent back
    count = _depth_or_fail(broker, queue)
    try:
        for delivery in _fetch(broker, queue, count):
            letter = DeadLetter.from_delivery(delivery, seal, route)
            if not selection.matches(letter) or (selection.ids and letter.id in sent):
                continue  # held until the end, then given back
            found.add(letter.id)
            outgoing = replayed(letter, from_step, route_model, seal)
            overwritten = ledger.earlier(route, letter.id, letter.died) if ledger and again else None
            earlier = ledger.claim(route, letter.id, letter.died, at=at, user=user, again=again) if ledger else None
            if earlier is not None:
                report.skipped.append((letter, earlier))
                continue
            try:
                _send(broker, ("", target, outgoing), letter, report.count, queue)
            except ReplayFailed as exc:
                if ledger is not None:
                    ledger.release(route, letter.id, letter.died, at=at, restore=overwritten)
                exc.report = report
                raise
            broker.ack(delivery)
            report.replayed.append(letter)
            sent.add(letter.id)
            if progress is not None:
                progress(report.count, len(selection.ids) or count)
            if selection.ids and sent >= selection.ids:
                break
    finally:
        broker.give_back_fetched()
    report.missing = _missing(selection.ids - found, route, ledger)
    return report


def plan(broker: Broker, route: str, selection: Selection, *, from_step: str | None = None, route_model=None,
         seal: Seal, ledger: ReplayLedger | None = None, again: bool = False, user: str = "") -> ReplayReport:
    """What `replay_report` would do, touching nothing (a dry run)."""
    report, found, sent, seen, at = ReplayReport(), set(), set(), {}, now_iso()
    for letter in browse(broker, route, None, seal=seal):
        if not selection.matches(letter) or (selection.ids and letter.id in sent):
            continue
        found.add(letter.id)
        if from_step is not None:
            _check_resumable(letter, from_step, route_model)
        earlier = None
        if ledger is not None and not again:  # a second copy of a letter this replay sends is refused too
            earlier = ledger.earlier(route, letter.id, letter.died) or seen.get((letter.id, letter.died))
        if earlier is not None:
            report.skipped.append((letter, earlier))
            continue
        seen[(letter.id, letter.died)] = Replay(letter.id, letter.died, at, user)
        report.replayed.append(letter)
        sent.add(letter.id)
    report.missing = _missing(selection.ids - found, route, ledger)
    return report


def _missing(ids: set[str], route: str, ledger: ReplayLedger | None) -> list[tuple[str, Replay | None]]:
    return [(i, ledger.last(route, i) if ledger else None) for i in sorted(ids)]


def purge(broker: Broker, route: str, ids: Iterable[str] | None = None, *, seal: Seal) -> int:
    """Delete the dead letters of `route`: all of them, or those with the given ids; how many went."""
    queue = names.dead_letter_queue(route)
    if ids is None:
        _depth_or_fail(broker, queue)
        return broker.purge(queue)
    wanted = set(ids)
    return _drop(broker, route, wanted, seal) if wanted else 0


# -- helpers ----------------------------------------------------------------------------------

def _drop(broker: Broker, route: str, wanted: set[str], seal: Seal) -> int:
    """Ack (delete) the dead letters with these ids; give every other message back untouched."""
    queue, dropped = names.dead_letter_queue(route), 0
    try:
        for delivery in _fetch(broker, queue, _depth_or_fail(broker, queue)):
            letter = DeadLetter.from_delivery(delivery, seal, route)
            if letter.id not in wanted:
                continue  # held until the end, then given back
            broker.ack(delivery)
            dropped += 1
            wanted.discard(letter.id)
            if not wanted:
                break
    finally:
        broker.give_back_fetched()
    return dropped


def _send(broker: Broker, where: tuple[str, str, Outgoing] | None, letter: DeadLetter, moved: int,
          queue: str) -> None:
    if where is None:
        return
    exchange, routing_key, m = where
    try:
        confirmed_publish(broker, CONFIRM_TIMEOUT)(exchange, routing_key, m.body, m.content_type, m.headers,
                                                   m.message_id)
    except EsbError as exc:
        raise ReplayFailed(f"replayed {moved}; {letter.id} stays in {queue}: {exc}", moved) from None


def replayed(letter: DeadLetter, from_step: str | None, route_model, seal: Seal) -> Outgoing:
    """The message a replay sends: the original, sealed with the state that makes the route run it
    from the start (or resume at the failed step) and with the key generations of its effects, so
    that an effect compensated when it died is made anew under a new key. A dead letter esb did
    not seal goes back as the plain message it is."""
    if from_step is None and not letter.authentic:
        return Outgoing(letter.body, letter.content_type, wire_headers(letter.headers), letter.id)
    if from_step is None:
        resume, body, content_type = 0, letter.body, letter.content_type
    else:
        _check_resumable(letter, from_step, route_model)
        resume, body = letter.resume_step, letter.failed_body
        content_type = letter.failed_content_type or letter.content_type
    state = RetryState(1, resume, (), None, letter.body, letter.content_type, letter.headers,
                       generations=dict(letter.generations))
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


def _fetch(broker: Broker, queue: str, count: int) -> Iterator[Delivery]:
    """At most `count` messages of `queue`, each held unacked by the broker."""
    for _ in range(count):
        delivery = broker.get(queue)
        if delivery is None:
            return
        yield delivery


def _depth_or_fail(broker: Broker, queue: str) -> int:
    depth = broker.queue_depth(queue)
    if depth is None:
        raise EsbError(f"there is no queue '{queue}' on {mask_url(broker.url)}: has its route run on this broker?")
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
