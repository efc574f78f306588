"""The school calendar: when a cycle opens, and which local days and times a scheduled send may use:
never a day the setting is closed, and with `working_days_only` never a weekend or public holiday.

Pure functions of the schedule and a date or aware datetime; no database, no clock.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property
from zoneinfo import ZoneInfo

from .config import Closure, Schedule


class Calendar:
    def __init__(self, schedule: Schedule, tz: ZoneInfo, closures: tuple[Closure, ...] = ()):
        self.schedule = schedule
        self.tz = tz
        self.closures = closures

    @cached_property
    def _holidays(self):
        country, _, subdiv = self.schedule.holidays.partition("-")
        # Years are filled in lazily by the package as dates are looked up; the package itself is
        # imported when working days are first asked for, not by every command.
        import holidays

        return holidays.country_holidays(country, subdiv=subdiv or None)

    def is_working_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and day not in self._holidays

    def holiday_name(self, day: dt.date) -> str | None:
        return self._holidays.get(day)

    def closure_name(self, day: dt.date) -> str | None:
        """The closure `day` falls in (e.g. "Christmas holiday"), if any."""
        return next((c.name for c in self.closures if c.first <= day <= c.last), None)

    @cached_property
    def _closed_spans(self) -> list[tuple[dt.date, dt.date]]:
        """The closures merged where they touch or overlap, in order."""
        spans: list[list[dt.date]] = []
        for c in sorted(self.closures, key=lambda c: c.first):
            if spans and c.first <= spans[-1][1] + dt.timedelta(days=1):
                spans[-1][1] = max(spans[-1][1], c.last)
            else:
                spans.append([c.first, c.last])
        return [(a, b) for a, b in spans]

    def _closed_days(self, after: dt.date, upto: dt.date) -> int:
        """How many days after `after`, up to and including `upto`, the setting is closed."""
        return sum(max(0, (min(last, upto) - max(first, after + dt.timedelta(days=1))).days + 1)
                   for first, last in self._closed_spans)

    def open_days_after(self, day: dt.date, days: int) -> dt.date:
        """The day `days` days after `day`, counting only days the setting is open: a closure's
        days do not count (weekends and public holidays do). Jumps closure by closure, so a long
        closure costs no more than a short one."""
        while days > 0:
            later = day + dt.timedelta(days=days)
            days = self._closed_days(day, later)
            day = later
        return day

    def send_day(self, day: dt.date) -> dt.date:
        """The day a send planned for `day` actually goes, and a date to confirm by moves to: the
        next day the setting is open (and, with `working_days_only`, a working day)."""
        while self.closure_name(day) is not None or (self.schedule.working_days_only
                                                     and not self.is_working_day(day)):
            day += dt.timedelta(days=1)
        return day

    def at_send_time(self, day: dt.date) -> dt.datetime:
        """`send_time` on that local day, as an aware UTC datetime (DST-correct)."""
        local = dt.datetime.combine(day, self.schedule.send_time, tzinfo=self.tz)
        return local.astimezone(dt.timezone.utc)

    def slot(self, day: dt.date) -> dt.datetime:
        """When a send planned for local `day` goes out."""
        return self.at_send_time(self.send_day(day))

    def local_date(self, moment: dt.datetime) -> dt.date:
        return moment.astimezone(self.tz).date()

    def cycle_opens(self, year: int) -> dt.datetime:
        """The nominal opening of the cycle of `year` (29 Feb falls back to 28 Feb in common years)."""
        month, day = self.schedule.annual_open
        try:
            date = dt.date(year, month, day)
        except ValueError:
            date = dt.date(year, month, day - 1)
        return self.at_send_time(date)

    def cycle_year(self, moment: dt.datetime) -> int:
        """The year whose opening is the latest one at or before `moment`."""
        year = moment.astimezone(self.tz).year
        return year if self.cycle_opens(year) <= moment else year - 1
