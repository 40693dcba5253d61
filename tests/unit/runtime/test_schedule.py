"""Scheduled routes: fire times (zones, DST, calendars), missed fire times, and one machine firing."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from esb.routes.model import Route, Schedule, Source
from esb.runtime.schedule import LATE_GRACE, LEASE_TTL, MAX_CATCH_UP, Scheduler, message_id, next_fire_times
from esb.store import SqliteStore

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def times(schedule: Schedule, after: datetime, count: int) -> list[str]:
    return [t.isoformat() for t in next_fire_times(schedule, after, count)]


def test_a_weekday_morning_in_shanghai_fires_at_eight_local_with_the_offset():
    schedule = Schedule("0 8 * * *", "Asia/Shanghai", "weekdays")
    assert times(schedule, datetime(2026, 12, 4, 9, tzinfo=SHANGHAI), 3) == [  # a Friday, after 08:00
        "2026-12-07T08:00:00+08:00", "2026-12-08T08:00:00+08:00", "2026-12-09T08:00:00+08:00"]


def test_a_berlin_0230_fire_time_moves_to_0300_on_the_spring_forward_night_and_fires_once_in_autumn():
    schedule = Schedule("30 2 * * *", "Europe/Berlin")
    assert times(schedule, datetime(2026, 3, 28, 12, tzinfo=BERLIN), 2) == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    assert times(schedule, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 2) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_china_working_days_skip_the_spring_festival_2026_and_fire_on_the_make_up_saturdays():
    schedule = Schedule("0 8 * * *", "Asia/Shanghai", "cn_workdays")
    fired = times(schedule, datetime(2026, 2, 12, 9, tzinfo=SHANGHAI), 4)
    # Feb 14 (Sat) and Feb 28 (Sat) are make-up working days; Feb 15-23 the holiday
    assert fired == ["2026-02-13T08:00:00+08:00", "2026-02-14T08:00:00+08:00",
                     "2026-02-24T08:00:00+08:00", "2026-02-25T08:00:00+08:00"]
    assert "2026-02-28T08:00:00+08:00" in times(schedule, datetime(2026, 2, 26, 9, tzinfo=SHANGHAI), 2)
    weekdays = times(Schedule("0 8 * * *", "Asia/Shanghai", "weekdays"), datetime(2026, 2, 12, 9, tzinfo=SHANGHAI), 3)
    assert weekdays == ["2026-02-13T08:00:00+08:00", "2026-02-16T08:00:00+08:00", "2026-02-17T08:00:00+08:00"]


def test_the_message_id_is_the_route_and_the_fire_time():
    at = datetime(2026, 12, 7, 8, tzinfo=SHANGHAI)
    assert message_id("bank-statement-pull", at) == "schedule:bank-statement-pull:2026-12-07T08:00:00+08:00"
    assert message_id("bank-statement-pull", at) == message_id("bank-statement-pull", at.replace())


# --- the scheduler ------------------------------------------------------------------------------
class Clock:
    def __init__(self, at: datetime):
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def to(self, at: datetime) -> None:
        self.now = at.timestamp()


class Published(list):
    def __call__(self, exchange, routing_key, body, content_type, headers, message_id):
        self.append((exchange, routing_key, json.loads(body), message_id))

    @property
    def ids(self) -> list[str]:
        return [p[3] for p in self]


def route(catch_up: bool = False) -> Route:
    schedule = Schedule("0 8 * * *", "Asia/Shanghai", "weekdays", catch_up)
    return Route("pull", Source(queue="pull", schedule=schedule), ())


def at(day: int, hour: int = 8, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=SHANGHAI)


@pytest.fixture
def store(tmp_path):
    clock = Clock(at(4, 7))
    store = SqliteStore(tmp_path / "store.sqlite3", clock=clock)
    yield store, clock
    store.close()


def scheduler(store, clock, published, owner="a", catch_up=False) -> Scheduler:
    from esb.store.marks import marks_for
    return Scheduler(route(catch_up), published, store.leases(), marks_for(store), owner, clock=clock)


def test_a_scheduler_publishes_one_trigger_message_per_fire_time_to_the_routes_queue(store):
    store, clock = store
    published = Published()
    s = scheduler(store, clock, published)
    assert s.tick() == []              # Friday 07:00: the first round only remembers now
    clock.to(at(4, 8, 0, 1))
    s.tick()
    clock.to(at(4, 8, 0, 20))
    s.tick()                           # the same fire time again: nothing
    assert published == [("", "pull", {"schedule": "pull", "fire_time": "2026-12-04T08:00:00+08:00",
                                       "date": "2026-12-04", "timezone": "Asia/Shanghai"},
                          "schedule:pull:2026-12-04T08:00:00+08:00")]


def test_fire_times_missed_while_down_are_skipped_and_reported(store, capsys):
    store, clock = store
    published = Published()
    scheduler(store, clock, published).tick()
    clock.to(at(9, 8, 0, 5))           # down from Friday 07:00 to Wednesday 08:00:05
    scheduler(store, clock, published).tick()
    assert published.ids == ["schedule:pull:2026-12-09T08:00:00+08:00"]  # on time; Fri, Mon, Tue missed
    logged = capsys.readouterr().out
    assert "schedule_missed" in logged and "count=3" in logged


def test_catch_up_emits_the_missed_fire_times_late_at_most_the_last_ten(store):
    store, clock = store
    published = Published()
    scheduler(store, clock, published, catch_up=True).tick()
    clock.to(at(9, 8, 0, 5))
    scheduler(store, clock, published, catch_up=True).tick()
    assert published.ids == [f"schedule:pull:2026-12-{d:02d}T08:00:00+08:00" for d in (4, 7, 8, 9)]
    clock.to(datetime(2027, 1, 29, 9, tzinfo=SHANGHAI))  # weeks later: only the last MAX_CATCH_UP
    scheduler(store, clock, published, catch_up=True).tick()
    assert len(published) == 4 + MAX_CATCH_UP
    assert published.ids[-1] == "schedule:pull:2027-01-29T08:00:00+08:00"


def test_a_fire_time_within_the_grace_is_not_missed():
    assert LATE_GRACE > LEASE_TTL + 15  # a lease handing over emits on time, not as missed


def test_two_machines_on_one_store_fire_each_time_once_and_the_standby_takes_over(store):
    store, clock = store
    published = Published()
    a, b = scheduler(store, clock, published, "host-a:1"), scheduler(store, clock, published, "host-b:1")
    a.tick(), b.tick()
    for day in (4, 7):                 # both run rounds; a holds the lease
        clock.to(at(day, 8, 0, 1))
        assert a.tick() and not b.tick()
        clock.now += 10
        assert not a.tick() and not b.tick()
    clock.to(at(8, 7, 59, 50))
    assert not a.tick() and not b.tick()  # a renews its lease, then stops (no release: its machine is gone)
    clock.to(at(8, 8, 0, 1))
    assert not b.tick()                # the lease has not run out yet: b waits
    clock.now += LEASE_TTL + 1
    assert [t.isoformat() for t in b.tick()] == ["2026-12-08T08:00:00+08:00"]
    clock.to(at(8, 8, 2))
    assert not a.tick()                # a is back: it lost the lease and fires nothing
    assert published.ids == [f"schedule:pull:2026-12-{d:02d}T08:00:00+08:00" for d in (4, 7, 8)]
