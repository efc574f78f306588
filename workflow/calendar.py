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
