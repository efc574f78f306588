"""`signoff plan`: the dated timeline of what would be sent between two moments, assuming nobody
confirms. Read-only; built from the same planner functions the tick uses."""

from __future__ import annotations

import bisect
import itertools
import datetime as dt
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import digest, library, pacing, planner, standing
from .services import Services
from .models import Cycle, Outbox, Request, Staff


@dataclass(frozen=True, order=True)
class Entry:
    when: dt.datetime
    what: str
    who: str
    policy: str
    why: str


def entries(svc: Services, session: Session, start: dt.datetime, end: dt.datetime,
            lib: library.Library | None = None) -> list[Entry]:
    """Every send between `start` and `end`, for each active policy of `lib` (default: as
    stored; a console preview gives one with its change made) on its own calendar to the people
    in its audience."""
    lib = lib or svc.library(session)
    out: list[Entry] = []
    overdue: list[dt.datetime] = []
    for policy in lib.active:
        cal = policy.calendar
        people = session.scalars(select(Staff).where(
            Staff.active, Staff.setting_id == lib.setting_id, standing.in_audience(policy.id, policy.audience))
            .order_by(Staff.name)).all()
        year = cal.cycle_year(start)
        for y in range(year, cal.cycle_year(end) + 1):
            cycle = session.scalars(select(Cycle).filter_by(policy_id=policy.id, year=y)).first()
            opens = cycle.opens_at if cycle else cal.cycle_opens(y)
            requests = {}
            if cycle is not None:
                requests = {r.staff_id: r for r in session.scalars(
                    select(Request).where(Request.cycle_id == cycle.id))}
            cycle_end = cal.cycle_opens(y + 1)
            window_start = max(start, opens if y > year else start)
            window_end = min(end, cycle_end)
            # People in the same state have the same sends, for the same reasons: on a large
            # roster nearly everyone shares a handful of states, so each is worked out once.
            planned: dict[planner.RequestState, tuple] = {}
            for person in people:
                request = requests.get(person.id)
                if request is not None and request.closed_at is not None:
                    continue
                state = (planner.RequestState.of(request) if request is not None else
                         planner.RequestState(cycle_opens=opens, start_date=person.start_date))
                if state not in planned:
                    planned[state] = _sends(cal, y, opens, state, window_start, window_end)
                sends, due = planned[state]
                who = f"{person.name} <{person.email}>"
                out.extend(Entry(when, what, who, policy.slug, why) for when, what, why in sends)
                if due is not None and due <= window_end:
                    overdue.append(due)
    out.extend(_digests(svc, session, lib, sorted(overdue), start, end))
    return sorted(out)


def _sends(cal, year: int, opens: dt.datetime, state: planner.RequestState,
           start: dt.datetime, end: dt.datetime) -> tuple[list[tuple], dt.datetime | None]:
    """(when, what, why) of each send to a person in `state` between `start` and `end`; and, once
    their first reminder has gone (or will have by then), when they are overdue."""
    sends = []
    reminded = state.reminded_at
    if reminded is None and state.stage_sent >= planner.REMINDER:
        reminded = start  # queued and not gone yet: it goes with the tick at `start`
    for when, stage in planner.projection(state, cal, start, end):
        if stage == planner.REMINDER:
            reminded = when
            why = _first_reminder_why(cal, year, opens, state.start_date, when)
            planned = planner.first_reminder_day(state, cal)
        else:
            days = cal.schedule.reminder_after_days[stage - 1]
            why = f"{days} days after first reminder ({cal.local_date(reminded):%-d %b})"
            planned = planner.followup_day(reminded, stage, cal)
        sends.append((when, planner.stage_label(stage), why + _moved(cal, when, planned)))
    return sends, (planner.overdue_at(reminded, cal, state.due_extended_to)
                   if reminded is not None else None)


def _digests(svc: Services, session: Session, lib: library.Library, overdue: list[dt.datetime],
             start: dt.datetime, end: dt.datetime) -> Iterator[Entry]:
    cal = lib.calendar
    head = svc.config.head_teacher
    last_day = digest.last_digest_day(lib, session)
    while overdue:
        due = max(planner.next_digest_due(overdue[0], last_day, cal), start)
        if due > end:
            return
        count = bisect.bisect_right(overdue, due)  # `overdue` is sorted
        planned = planner.next_digest_day(overdue[0], last_day, cal)
        yield Entry(due, "head-teacher digest", f"{head.name} <{head.email}>", "all",
                    f"{count} overdue by then" + _moved(cal, due, planned))
        last_day = cal.local_date(due)


def _first_reminder_why(cal, year: int, opens: dt.datetime, start_date: dt.date | None,
                        when: dt.datetime) -> str:
    opening = cal.slot(cal.local_date(opens))
    if start_date is not None and cal.slot(start_date) > opening:
        return f"new starter, starts {start_date:%a %-d %b}"
    if when > opening:
        return f"{year} cycle is open and they have not been asked yet"
    return f"{year} cycle opens {cal.local_date(opens):%a %-d %b}"


def _moved(cal, when: dt.datetime, planned: dt.date) -> str:
    """Say why a send goes later than its planned day: the closures, weekend or public holidays it
    skipped.
    One that is late only because the timeline starts after its day (asked at once) skipped none."""
    if when > cal.slot(planned):
        return ""
    skipped, day = [], planned
    while day < cal.local_date(when):
        skipped.append(cal.closure_name(day) or cal.holiday_name(day) or day.strftime("%A"))
        day += dt.timedelta(days=1)
    return f"; after {', '.join(dict.fromkeys(skipped))}" if skipped else ""  # each name once


def render(svc: Services, session: Session, start: dt.datetime, end: dt.datetime) -> Iterator[str]:
    tz = svc.tz
    found = entries(svc, session, start, end)
    yield (f"plan for {svc.config.setting.name}, {start.astimezone(tz):%a %-d %b %Y %H:%M} to "
           f"{end.astimezone(tz):%a %-d %b %Y %H:%M} ({tz.key}), if nobody confirms:")
    if not found:
        yield "nothing to send in this period"
        return
    held = dict(held_back(svc, session, start, found))
    for i, e in enumerate(found):
        yield (f"{e.when.astimezone(tz):%Y-%m-%d %a %H:%M}  {e.what:<20} {e.who}  [{e.policy}]  "
               f"{e.why}")
        if i in held:
            yield f"  … {held[i]}"
    yield f"{len(found)} messages"


def held_back(svc: Services, session: Session, start: dt.datetime,
              found: list[Entry]) -> Iterator[tuple[int, str]]:
    """Under the mail provider's limits, when each moment's emails will all have gone: (index of
    the moment's last entry, "48 emails waiting: all sent by …"), for moments with more than one
    email. What went in the day before `start` counts against the daily limit."""
    mail = svc.config.mail
    if not pacing.limited(mail.max_per_minute, mail.max_per_day):
        return
    recent = session.scalars(select(Outbox.sent_at).where(Outbox.sent_at > start - pacing.DAY))
    projection = pacing.Projection(mail.max_per_minute, mail.max_per_day, recent)
    for when, group in itertools.groupby(enumerate(found), key=lambda pair: pair[1].when):
        indexes = [i for i, _ in group]
        finish = projection.add(len(indexes), when)
        if len(indexes) > 1 or finish > when:
            yield indexes[-1], pacing.describe(len(indexes), "email", finish,
                                               mail.max_per_minute, svc.tz)
