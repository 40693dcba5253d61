"""Scheduled routes: fire times from a cron expression, a time zone and a calendar; a Scheduler
that publishes one trigger message per fire time to the route's queue.

Fire times: croniter reads the cron in the route's zone (zoneinfo). Across a DST change a wall
time that does not exist (Europe/Berlin 02:30 on the spring-forward night) fires at the first
moment after the gap (03:00), and one that happens twice (the autumn night) fires once, at its
first occurrence. The calendar then keeps the days it may fire on: every day (`none`), Monday
to Friday (`weekdays`), or China's statutory working days (`cn_workdays`: the `chinesecalendar`
package, which follows the State Council's yearly notice of holidays and make-up working days;
for a year it has no data for, it falls back to Monday to Friday and logs schedule_calendar_unknown).

The trigger message: body {"schedule": route, "fire_time": ISO 8601 with the zone's offset, "date":
the local date, "timezone": zone}, message id `schedule:<route>:<fire time>` — the same fire time
is always the same message, so the route's idempotency (keyed by message id) runs it once.

One Scheduler per scheduled route, in each worker that runs pollers. A round (`tick`):
    1. lead: take or renew the lease `schedule:<route>` (esb.store.leases); a standby does nothing;
    2. read the mark `schedule:<route>` (esb.store.marks): the last fire time dealt with. None yet
       (a new route): the mark is set to now; earlier fire times are not this route's past;
    3. the fire times after the mark up to now are due. One at most LATE_GRACE old is emitted as
       usual (a lease handing over, a quick restart); older ones were missed (esb was down):
       skipped and logged as schedule_missed, unless `catch_up: true`, which emits the last
       MAX_CATCH_UP of them late (schedule_caught_up) and reports the rest as missed;
    4. each emitted fire time: re-check the lease with its token, publish (confirmed), set the
       mark. A crash between the confirm and the mark re-emits the same message id next round.
A failing broker or store ends the round; the fire time is tried again in the next one.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from croniter import croniter

from esb.errors import ProcessingError
from esb.message import JSON
from esb.routes.model import Route, Schedule
from esb.store.leases import Leadership, Leases
from esb.store.marks import Marks, MemoryMarks
from esb.store.records import StoreUnavailable
from esb.transform import jsoncodec

ROUND = 15.0             # seconds between rounds at most: a fire time is emitted within this of its time
LEASE_TTL = 3 * ROUND    # a dead leader is replaced within LEASE_TTL + ROUND
LATE_GRACE = 300.0       # a fire time this late is still emitted as on time (a handover, a restart)
MAX_CATCH_UP = 10        # catch_up emits at most the last this many missed fire times
_SEARCH_LIMIT = 3000     # cron candidates looked at for one fire time (a calendar that rejects them all)

Publish = Callable[[str, str, bytes, str, Mapping[str, Any], str], None]

log = structlog.get_logger("esb.runtime.schedule")


# --- fire times ---------------------------------------------------------------------------------
def schedule_problem(schedule: Schedule) -> tuple[str, str, str] | None:
    """(field, sentence, hint) when the schedule cannot run, else None."""
    if not croniter.is_valid(schedule.cron):
        return ("cron", f"'{schedule.cron}' is not a cron expression",
                "write five fields: minute hour day-of-month month day-of-week, e.g. '0 8 * * 1-5'")
    try:
        ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ("timezone", f"'{schedule.timezone}' is not a time zone", "write an IANA zone like Asia/Shanghai")
    return None


def fire_times(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """The fire times strictly after `after` (aware), in order, in the schedule's zone; endless."""
    zone = ZoneInfo(schedule.timezone)
    it = croniter(schedule.cron, after.astimezone(zone))
    previous_wall, misses = None, 0
    while misses < _SEARCH_LIMIT:
        at = it.get_next(datetime)
        wall = at.replace(tzinfo=None)
        repeated, previous_wall = wall == previous_wall, wall  # the autumn hour that happens twice
        if repeated or not fire_day(schedule.calendar, at.date()):
            misses += 1
            continue
        misses = 0
        yield at


def next_fire_times(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    times = fire_times(schedule, after)
    return [t for t, _ in zip(times, range(count), strict=False)]


def fire_day(calendar: str, day: date) -> bool:
    if calendar == "weekdays":
        return day.weekday() < 5
    if calendar == "cn_workdays":
        return _cn_workday(day)
    return True


def _cn_workday(day: date) -> bool:
    import chinese_calendar
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:  # a year the installed package has no notice for
        _unknown_year(day.year)
        return day.weekday() < 5


@functools.cache
def _unknown_year(year: int) -> None:
    log.warning("schedule_calendar_unknown", calendar="cn_workdays", year=year,
                hint="upgrade chinesecalendar for this year's holidays; Monday to Friday meanwhile")


def message_id(route: str, fire_time: datetime) -> str:
    return f"schedule:{route}:{fire_time.isoformat()}"


def trigger_body(route: str, schedule: Schedule, fire_time: datetime) -> dict:
    return {"schedule": route, "fire_time": fire_time.isoformat(), "date": fire_time.date().isoformat(),
            "timezone": schedule.timezone}


# --- the scheduler ------------------------------------------------------------------------------
class Scheduler:
    """Fires one scheduled route; `run(stop_event)` repeats `tick` until stopped. With `leases`
    (the store's) it fires only while it holds `schedule:<route>` as `owner`. `adapter`/`inbound`
    name it beside the SFTP pollers the runtime runs with it."""

    adapter = "schedule"

    def __init__(self, route: Route, publish: Publish, leases: Leases | None = None, marks: Marks | None = None,
                 owner: str = "", clock: Callable[[], float] = time.time):
        assert route.source.schedule is not None
        self.route, self.schedule, self.inbound = route.name, route.source.schedule, route.name
        self.queue = route.source.queue
        self.name = f"schedule:{route.name}"
        self._publish, self._clock = publish, clock
        self.marks = marks or MemoryMarks()
        self._log = log.bind(route=route.name)
        self.leadership = None if leases is None else Leadership(leases, self.name, owner, LEASE_TTL, self._log,
                                                                 "schedule")

    def tick(self) -> list[datetime]:
        """One round; returns the fire times emitted in it."""
        emitted: list[datetime] = []
        try:
            if self.leadership is not None and not self.leadership.lead():
                return emitted
            for at in self._due():
                if self.leadership is not None and not self.leadership.still_leading():
                    break
                self._emit(at)
                emitted.append(at)
        except (StoreUnavailable, ProcessingError) as exc:  # the store or the broker: next round
            self._log.error("schedule_failed", error_class=getattr(exc, "error_class", "store"), error=exc.message)
        return emitted

    def _due(self) -> list[datetime]:
        """The fire times to emit now; missed ones are skipped here (the mark moves past them)."""
        now = datetime.fromtimestamp(self._clock(), ZoneInfo(self.schedule.timezone))
        mark = self.marks.get(self.name)
        if mark is None:
            self.marks.set(self.name, now.isoformat())
            return []
        due = []
        for at in fire_times(self.schedule, datetime.fromisoformat(mark)):
            if at > now:
                break
            due.append(at)
        late = [at for at in due if (now - at).total_seconds() > LATE_GRACE]
        keep = late[-MAX_CATCH_UP:] if self.schedule.catch_up else []
        missed = late[:len(late) - len(keep)]
        if missed:
            self._log.warning("schedule_missed", count=len(missed), first=missed[0].isoformat(),
                              last=missed[-1].isoformat(), catch_up=self.schedule.catch_up)
            self.marks.set(self.name, missed[-1].isoformat())
        return [at for at in due if at not in missed]

    def _emit(self, at: datetime) -> None:
        body = jsoncodec.dumps(trigger_body(self.route, self.schedule, at))
        body = body if isinstance(body, bytes) else body.encode()
        self._publish("", self.queue, body, JSON, {}, message_id(self.route, at))  # the default exchange: its queue
        self.marks.set(self.name, at.isoformat())
        late = self._clock() - at.timestamp()
        event = "schedule_caught_up" if late > LATE_GRACE else "schedule_fired"
        self._log.info(event, fire_time=at.isoformat(), message_id=message_id(self.route, at), late_s=round(late, 1))

    def wait_time(self) -> float:
        """Seconds to the next round: the next fire time, at most ROUND away."""
        now = datetime.fromtimestamp(self._clock(), ZoneInfo(self.schedule.timezone))
        upcoming = next_fire_times(self.schedule, now, 1)
        until = (upcoming[0] - now).total_seconds() if upcoming else ROUND
        return max(0.05, min(ROUND, until + 0.01))

    def run(self, stop_event: threading.Event) -> None:
        while not stop_event.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a scheduler must outlive any one bad round
                self._log.exception("schedule_failed")
            stop_event.wait(self.wait_time())

    def close(self) -> None:
        """Stop: release the lease, so another machine's scheduler takes over at once."""
        try:
            if self.leadership is not None:
                self.leadership.step_down()
        except StoreUnavailable as exc:  # it runs out by itself
            self._log.error("schedule_lease_release_failed", error=exc.message)


def schedulers(routes: list[Route], publish: Publish, store: Any = None, owner: str = "") -> list[Scheduler]:
    """One Scheduler per scheduled route; the lease and the marks are the store's (a dict without one)."""
    from esb.store.marks import marks_for
    leases = store.leases() if hasattr(store, "leases") else None
    marks = marks_for(store)
    return [Scheduler(route, publish, leases, marks, owner) for route in routes if route.source.schedule]
