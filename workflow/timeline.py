"""`signoff plan`: the dated timeline of what would be sent between two moments, assuming nobody
confirms. Read-only; built from the same planner functions the tick uses."""

from __future__ import annotations

import bisect
import itertools
import datetime as dt
from dataclasses import dataclass
from typing import Iterator

from collections import Counter

from sqlalchemy import func, null, select
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


@dataclass(frozen=True, order=True)
class Batch:
    """The sends of one kind, for one policy, at one moment, for one reason: to `count` people
    (named in `who` when asked for)."""

    when: dt.datetime
    what: str
    policy: str  # its slug, or "all" for the digest
    why: str
    count: int
    who: tuple[str, ...] = ()


def entries(svc: Services, session: Session, start: dt.datetime, end: dt.datetime,
            lib: library.Library | None = None) -> list[Entry]:
    """Every send between `start` and `end`, one per person: `signoff plan`'s lines."""
    return sorted(Entry(b.when, b.what, who, b.policy, b.why)
                  for b in batches(svc, session, start, end, lib, names=True) for who in b.who)


def batches(svc: Services, session: Session, start: dt.datetime, end: dt.datetime,
            lib: library.Library | None = None, names: bool = False,
            policy_id: int | None = None) -> list[Batch]:
    """Every send between `start` and `end`, counted per moment, kind, policy and reason, for each
    active policy of `lib` (default: as stored; a console preview gives one with its change
    made; `policy_id`: that one only, and no digests) on its own calendar to the people in its
    audience. People in the same state have the same sends for the same reasons, so the
    database counts them by state and each state is planned once: at 50,000 staff that is a
    handful of states, not 50,000 projections. With `names`, each batch names its people."""
    lib = lib or svc.library(session)
    found: Counter = Counter()
    named: dict[tuple, list[str]] = {}
    overdue: Counter = Counter()
    for policy in lib.active:
        if policy_id is not None and policy.id != policy_id:
            continue
        cal = policy.calendar
        year = cal.cycle_year(start)
        for y in range(year, cal.cycle_year(end) + 1):
            cycle = session.scalars(select(Cycle).filter_by(policy_id=policy.id, year=y)).first()
            opens = cycle.opens_at if cycle else cal.cycle_opens(y)
            window_start = max(start, opens if y > year else start)
            window_end = min(end, cal.cycle_opens(y + 1))
            planned: dict[planner.RequestState, tuple] = {}
            for state, count, who in _states(session, lib, policy, cycle, opens, names):
                if state not in planned:
                    planned[state] = _sends(cal, y, opens, state, window_start, window_end)
                sends, due = planned[state]
                for when, what, why in sends:
                    key = (when, what, policy.slug, why)
                    found[key] += count
                    if names:
                        named.setdefault(key, []).extend(who)
                if due is not None and due <= window_end:
                    overdue[due] += count
    out = [Batch(*key, n, tuple(sorted(named.get(key, ())))) for key, n in found.items()]
    if policy_id is None:
        out.extend(_digests(svc, session, lib, overdue, start, end))
    return sorted(out)


_STATE = (Staff.start_date, Request.stage_sent, Request.reminded_at, Request.last_message_at,
          Request.due_extended_to)


def _states(session: Session, lib: library.Library, policy: library.Entry, cycle: Cycle | None,
            opens: dt.datetime, names: bool) -> Iterator[tuple[planner.RequestState, int, list]]:
    """(state, how many people, their "Name <address>" if `names`) of the active people in the
    policy's audience still to confirm in `cycle` (not yet made: nobody asked yet)."""
    columns = _STATE if cycle is not None else (Staff.start_date, *[null()] * 4)
    query = (select(*columns).select_from(Staff)
             .where(Staff.active, Staff.setting_id == lib.setting_id,
                    standing.in_audience(policy.id, policy.audience)))
    if cycle is not None:
        query = (query.outerjoin(Request, (Request.staff_id == Staff.id)
                                 & (Request.cycle_id == cycle.id))
                 .where(Request.closed_at.is_(None)))
    state_by = columns[:1] if cycle is None else columns
    if names:
        rows = session.execute(query.add_columns(Staff.name, Staff.email))  # sorted in batches()
        grouped: dict[tuple, list[str]] = {}
        for row in rows:
            grouped.setdefault(tuple(row[:len(_STATE)]), []).append(f"{row.name} <{row.email}>")
        found = [(key, len(who), who) for key, who in grouped.items()]
    else:
        found = [(tuple(row[:-1]), row[-1], []) for row in session.execute(
            query.add_columns(func.count()).group_by(*state_by))]
    for (start_date, stage_sent, reminded_at, last_message_at, extended), count, who in found:
        if stage_sent is None:  # not asked yet
            state = planner.RequestState(cycle_opens=opens, start_date=start_date)
        else:
            state = planner.RequestState(cycle_opens=opens, start_date=start_date,
                                         stage_sent=stage_sent, reminded_at=reminded_at,
                                         last_message_at=last_message_at,
                                         due_extended_to=extended)
        yield state, count, who


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


def _digests(svc: Services, session: Session, lib: library.Library, overdue: Counter,
             start: dt.datetime, end: dt.datetime) -> Iterator[Batch]:
    """The head teacher's digests: `overdue` counts the people overdue from each moment."""
    cal = lib.calendar
    head = svc.config.head_teacher
    last_day = digest.last_digest_day(lib, session)
    moments = sorted(overdue)
    running = list(itertools.accumulate(overdue[m] for m in moments))
    while moments:
        due = max(planner.next_digest_due(moments[0], last_day, cal), start)
        if due > end:
            return
        count = running[bisect.bisect_right(moments, due) - 1]
        planned = planner.next_digest_day(moments[0], last_day, cal)
        yield Batch(due, "head-teacher digest", "all",
                    f"{count} overdue by then" + _moved(cal, due, planned), 1,
                    (f"{head.name} <{head.email}>",))
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
    # A person's sends at one moment are one email, whatever the policies.
    emails = [(when, len({e.who for e in group}))
              for when, group in itertools.groupby(found, key=lambda e: e.when)]
    held = dict(held_back(svc, session, start, emails))
    for i, e in enumerate(found):
        yield (f"{e.when.astimezone(tz):%Y-%m-%d %a %H:%M}  {e.what:<20} {e.who}  [{e.policy}]  "
               f"{e.why}")
        if e.when in held and (i + 1 == len(found) or found[i + 1].when != e.when):
            yield f"  … {held[e.when]}"
    yield f"{len(found)} messages in {sum(n for _, n in emails)} emails"


def held_back(svc: Services, session: Session, start: dt.datetime,
              emails: list[tuple[dt.datetime, int]]) -> Iterator[tuple[dt.datetime, str]]:
    """Under the mail provider's limits, when each moment's emails will all have gone: (the
    moment, "48 emails waiting: all sent by …"), for moments with more than one email. `emails`
    is (moment, how many emails), in order. What went in the day before `start` counts against
    the daily limit."""
    mail = svc.config.mail
    if not pacing.limited(mail.max_per_minute, mail.max_per_day):
        return
    recent = session.scalars(select(func.min(Outbox.sent_at))
                             .where(Outbox.sent_at > start - pacing.DAY)
                             .group_by(Outbox.message_id))
    projection = pacing.Projection(mail.max_per_minute, mail.max_per_day, recent)
    for when, count in emails:
        finish = projection.add(count, when)
        if count > 1 or finish > when:
            yield when, pacing.describe(count, "email", finish, mail.max_per_minute, svc.tz)
