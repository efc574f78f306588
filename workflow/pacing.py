"""When emails held back by the mail provider's limits will have gone: pure functions of the limits,
what went in the last day and how many wait. `plan`, the console and the tick's summary ask these;
the send loop itself keeps the limits (outbox.py)."""

from __future__ import annotations

import collections
import datetime as dt
from typing import Iterable
from zoneinfo import ZoneInfo

DAY = dt.timedelta(hours=24)


def limited(per_minute: int, per_day: int) -> bool:
    return bool(per_minute or per_day)


class Projection:
    """Sends laid out within the limits, one group after another: one every 60/`per_minute`
    seconds, and at most `per_day` in any 24 hours, counting `recent` (what went before)."""

    def __init__(self, per_minute: int, per_day: int, recent: Iterable[dt.datetime] = ()):
        self.gap = dt.timedelta(minutes=1) / per_minute if per_minute else dt.timedelta(0)
        self.per_day = per_day
        self.window = collections.deque(sorted(recent))
        self.next: dt.datetime | None = None  # the earliest the next send may go

    def add(self, count: int, start: dt.datetime) -> dt.datetime | None:
        """When the last of `count` emails due at `start` will have gone (None for none)."""
        when = max(start, self.next) if self.next else start
        last = None
        for _ in range(count):
            if self.per_day:
                while self.window and self.window[0] <= when - DAY:
                    self.window.popleft()
                if len(self.window) >= self.per_day:
                    when = max(when, self.window.popleft() + DAY)  # the oldest leaves the window
            self.window.append(when)
            last, when = when, when + self.gap
        if last is not None:
            self.next = when
        return last


def all_sent_by(count: int, start: dt.datetime, per_minute: int, per_day: int,
                recent: Iterable[dt.datetime] = ()) -> dt.datetime | None:
    """When the last of `count` emails, the first due at `start`, will have gone; `recent` are
    the sends of the 24 hours before `start`."""
    return Projection(per_minute, per_day, recent).add(count, start)


def describe(count: int, noun: str, finish: dt.datetime, per_minute: int, tz: ZoneInfo) -> str:
    """'4,200 reminders waiting: all sent by Thu 3 Sep 08:40 at 30 a minute'."""
    rate = f" at {per_minute:,} a minute" if per_minute else ""
    return (f"{count:,} {noun}{'' if count == 1 else 's'} waiting: all sent by "
            f"{finish.astimezone(tz):%a %-d %b %H:%M}{rate}")
