"""The calendar, pure: working days, English (and other) public holidays, DST, cycle openings."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from workflow.calendar import Calendar
from workflow.config import Closure, Schedule

LONDON = ZoneInfo("Europe/London")
UTC = dt.timezone.utc
D = dt.date


def calendar(tz: ZoneInfo = LONDON, **overrides) -> Calendar:
    values = dict(annual_open=(9, 1), send_time=dt.time(8, 0), reminder_after_days=(7, 14),
                  escalate_after_days=21, digest_every_days=7, working_days_only=True,
                  holidays="GB-ENG")
    return Calendar(Schedule(**{**values, **overrides}), tz)


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("day,working", [
    (D(2026, 8, 28), True),    # Friday
    (D(2026, 8, 29), False),   # Saturday
    (D(2026, 8, 30), False),   # Sunday
    (D(2026, 8, 31), False),   # Summer bank holiday (Monday)
    (D(2026, 9, 1), True),
    (D(2026, 12, 25), False),  # Christmas Day, a Friday
    (D(2026, 12, 28), False),  # Boxing Day falls on Saturday: substitute Monday
    (D(2026, 12, 29), True),
    (D(2027, 12, 27), False),  # both on a weekend in 2027: substitutes Monday and Tuesday
    (D(2027, 12, 28), False),
    (D(2027, 12, 29), True),
    (D(2026, 1, 2), True),     # a working day in England …
])
def test_working_days_in_england(day, working):
    assert calendar().is_working_day(day) is working


def test_holiday_country_is_configurable():
    scotland = calendar(holidays="GB-SCT")
    assert not scotland.is_working_day(D(2026, 1, 2))  # … but a holiday in Scotland
    assert scotland.is_working_day(D(2026, 8, 31))     # and Scotland's summer holiday is 3 August
    assert not scotland.is_working_day(D(2026, 8, 3))
    assert scotland.send_day(D(2026, 1, 1)) == D(2026, 1, 5)
    assert calendar(holidays="GB-ENG").send_day(D(2026, 1, 1)) == D(2026, 1, 2)


def test_holiday_names():
    assert "Summer" in calendar().holiday_name(D(2026, 8, 31))
    assert calendar().holiday_name(D(2026, 9, 1)) is None


def test_send_across_a_weekend_and_bank_holiday_goes_on_tuesday():
    cal = calendar()
    for day in (D(2026, 8, 29), D(2026, 8, 30), D(2026, 8, 31)):
        assert cal.send_day(day) == D(2026, 9, 1)
        assert cal.slot(day) == utc(2026, 9, 1, 7, 0)  # 08:00 BST
    assert cal.send_day(D(2026, 8, 28)) == D(2026, 8, 28)


def test_christmas_week_moves_to_the_first_working_day():
    cal = calendar()
    assert cal.slot(D(2026, 12, 25)) == utc(2026, 12, 29, 8, 0)  # 08:00 GMT
    assert cal.slot(D(2027, 12, 24)) == utc(2027, 12, 24, 8, 0)
    assert cal.slot(D(2027, 12, 25)) == utc(2027, 12, 29, 8, 0)


def test_working_days_only_false_sends_on_the_day_itself():
    cal = calendar(working_days_only=False)
    assert cal.send_day(D(2026, 8, 29)) == D(2026, 8, 29)
    assert cal.send_day(D(2026, 8, 31)) == D(2026, 8, 31)
    assert cal.slot(D(2026, 12, 25)) == utc(2026, 12, 25, 8, 0)


@pytest.mark.parametrize("day,expected_utc", [
    (D(2026, 3, 27), utc(2026, 3, 27, 8, 0)),    # Friday before the change: GMT
    (D(2026, 3, 30), utc(2026, 3, 30, 7, 0)),    # Monday after: BST
    (D(2026, 10, 23), utc(2026, 10, 23, 7, 0)),  # Friday before the change back: BST
    (D(2026, 10, 26), utc(2026, 10, 26, 8, 0)),  # Monday after: GMT
])
def test_send_time_stays_0800_local_across_dst(day, expected_utc):
    moment = calendar().slot(day)
    assert moment == expected_utc
    assert moment.tzinfo == UTC
    local = moment.astimezone(LONDON)
    assert (local.date(), local.time()) == (day, dt.time(8, 0))


def test_dst_sunday_itself_when_every_day_is_a_send_day():
    cal = calendar(working_days_only=False)
    spring, autumn = cal.slot(D(2026, 3, 29)), cal.slot(D(2026, 10, 25))
    assert spring == utc(2026, 3, 29, 7, 0)
    assert autumn == utc(2026, 10, 25, 8, 0)
    assert spring.astimezone(LONDON).time() == autumn.astimezone(LONDON).time() == dt.time(8, 0)


def test_send_time_in_the_spring_gap_still_lands_on_that_day():
    cal = calendar(working_days_only=False, send_time=dt.time(1, 30))  # 01:30 does not exist
    moment = cal.slot(D(2026, 3, 29))
    assert cal.local_date(moment) == D(2026, 3, 29)


def test_local_date_uses_the_settings_zone():
    cal = calendar()
    assert cal.local_date(utc(2026, 8, 31, 23, 30)) == D(2026, 9, 1)  # 00:30 BST
    assert cal.local_date(utc(2026, 12, 31, 23, 30)) == D(2026, 12, 31)  # GMT


def test_cycle_opens_at_send_time_on_annual_open():
    cal = calendar()
    assert cal.cycle_opens(2026) == utc(2026, 9, 1, 7, 0)
    # The nominal opening is not moved; the first reminder is (see the planner tests).
    assert cal.cycle_opens(2029) == utc(2029, 9, 1, 7, 0)  # a Saturday


def test_29_february_opening_in_a_common_year_is_28_february():
    cal = calendar(annual_open=(2, 29))
    assert cal.cycle_opens(2028) == utc(2028, 2, 29, 8, 0)
    assert cal.cycle_opens(2027) == utc(2027, 2, 28, 8, 0)
    assert cal.cycle_year(utc(2027, 2, 28, 7, 59)) == 2026
    assert cal.cycle_year(utc(2027, 2, 28, 8, 0)) == 2027
    assert cal.cycle_year(utc(2028, 2, 28, 12, 0)) == 2027
    assert cal.cycle_year(utc(2028, 2, 29, 8, 0)) == 2028


def test_cycle_year_around_the_opening_moment():
    cal = calendar()
    opens = utc(2026, 9, 1, 7, 0)
    assert cal.cycle_year(opens - dt.timedelta(seconds=1)) == 2025
    assert cal.cycle_year(opens) == 2026
    assert cal.cycle_year(opens.astimezone(ZoneInfo("America/New_York"))) == 2026
    assert cal.cycle_year(utc(2027, 1, 15, 12, 0)) == 2026  # after New Year, same cycle
    assert cal.cycle_year(utc(2027, 8, 31, 23, 59)) == 2026


def test_cycle_year_at_a_year_boundary_uses_the_local_year():
    # In Auckland, 08:00 on 1 January is still 31 December in UTC.
    auckland = ZoneInfo("Pacific/Auckland")
    cal = calendar(auckland, annual_open=(1, 1), holidays="NZ")
    assert cal.cycle_opens(2027) == utc(2026, 12, 31, 19, 0)
    assert cal.cycle_year(utc(2026, 12, 31, 18, 59)) == 2026
    assert cal.cycle_year(utc(2026, 12, 31, 19, 0)) == 2027
    london = calendar(annual_open=(1, 1))
    assert london.cycle_year(utc(2027, 1, 1, 7, 59)) == 2026
    assert london.cycle_year(utc(2027, 1, 1, 8, 0)) == 2027


CHRISTMAS = Closure("Christmas holiday", D(2026, 12, 19), D(2027, 1, 4))
INSET = Closure("INSET day", D(2026, 9, 1), D(2026, 9, 1))


def test_no_send_goes_on_a_closure_day_and_dates_move_past_it():
    cal = Calendar(calendar().schedule, LONDON, (CHRISTMAS, INSET))
    assert cal.closure_name(D(2026, 12, 24)) == "Christmas holiday"
    assert cal.closure_name(D(2027, 1, 5)) is None
    assert cal.send_day(D(2026, 12, 21)) == D(2027, 1, 5)  # Monday of the holiday: Tue 5 Jan
    assert cal.send_day(D(2026, 9, 1)) == D(2026, 9, 2)    # the INSET day itself
    assert cal.slot(D(2026, 9, 1)) == utc(2026, 9, 2, 7, 0)
    assert cal.send_day(D(2026, 12, 18)) == D(2026, 12, 18)  # the last day of term is open


def test_a_closure_moves_sends_even_without_working_days_only():
    cal = Calendar(calendar(working_days_only=False).schedule, LONDON, (CHRISTMAS,))
    assert cal.send_day(D(2026, 12, 26)) == D(2027, 1, 5)
    assert cal.send_day(D(2027, 1, 9)) == D(2027, 1, 9)  # a Saturday, but weekends are allowed
