"""`signoff plan`: the dated timeline of what would be sent between two moments, assuming nobody
confirms. Read-only; built from the same planner functions the tick uses."""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import datetime as dt
from dataclasses import dataclass, replace
from typing import Iterator

from collections import Counter

from sqlalchemy import case, func, null, select
from sqlalchemy.orm import Session, aliased

from . import digest, library, pacing, planner, requests, standing
from .services import Services
from .models import Cycle, Outbox, Request, Staff
from .outbox import PERSONAL
from .models import WAITING


@dataclass(frozen=True, order=True)
class Entry:
    when: dt.datetime
    what: str
    who: str
    policy: str
    why: str
    confirm_by: str = ""  # YYYY-MM-DD: the date the email names (empty for a digest)

    @property
    def kind(self) -> str:
        """reminder, followup or digest: `plan --format csv`'s words."""
        return ("digest" if self.policy == "all" else
                "reminder" if self.what == planner.stage_label(planner.REMINDER) else "followup")

    @property
    def name_and_email(self) -> tuple[str, str]:
        name, _, email = self.who.rpartition(" <")
        return name, email.rstrip(">")


@dataclass(frozen=True, order=True)
class Batch:
    """The sends of one kind, for one policy, at one moment, for one reason: to `count` people
    (named in `who` when asked for)."""

    when: dt.datetime
    what: str
    policy: str  # its slug, or "all" for the digest
    why: str
    confirm_by: str  # YYYY-MM-DD: the date the emails name ("" for a digest)
    count: int
    who: tuple[str, ...] = ()


def entries(svc: Services, session: Session, start: dt.datetime, end: dt.datetime,
            lib: library.Library | None = None) -> list[Entry]:
    """Every send between `start` and `end`, one per person: `signoff plan`'s lines."""
    return sorted(Entry(b.when, b.what, who, b.policy, b.why, b.confirm_by)
                  for b in batches(svc, session, start, end, lib, names=True) for who in b.who)


def batches(svc: Services, session: Session, start: dt.datetime, end: dt.datetime,
            lib: library.Library | None = None, names: bool = False,
            policy_id: int | None = None, first: bool = False,
            states: dict[int, list[tuple[tuple, int]]] | None = None) -> list[Batch]:
    """Every send between `start` and `end`, counted per moment, kind, policy and reason, for each
    active policy of `lib` (default: as stored; a console preview gives one with its change
    made; `policy_id`: that one's only, and no digests) on its own calendar to the people in its
    audience. People in the same state have the same sends for the same reasons, so the
    database counts them by state and each state is planned once: at 50,000 staff that is a
    handful of states, not 50,000 projections. Where two policies send on one day at different
    moments, someone due for both gets the later one a day late (one email a day): then each
    person's states are read and each combination of them is planned once. With `names`, each
    batch names its people; with `first`, only the first moment's batches are wanted (the
    dashboard's next send), which waiting a day cannot make earlier. `states`: the people of
    each policy's current cycle by state, as standing.tallies_and_states counted them."""
    lib = lib or svc.library(session)
    windows = list(_windows(session, lib, start, end))
    groups: list[_Group] = []
    soonest = end
    for w in sorted(windows, key=lambda w: w.start):
        if first and w.start > soonest:
            continue  # a later cycle, after a send of this one
        mine = list(_alone(session, lib, w, False, states))
        groups.extend(mine)
        soonest = min([soonest, *(g.sends[0][0] for g in mine if g.sends)])
    meet, first_day = _may_meet(lib, groups, start)
    emailed = _emailed(lib, start)
    meet = meet and not first  # waiting a day cannot change the first moment's sends, but
    if first_day and not meet:  # those who had an email earlier that day wait
        meet = bool(session.scalar(select(emailed.exists())))
    if meet:
        combos = (_each if names else _combined)(session, lib, windows, emailed)
        groups = list(_together(lib, windows, combos, start))
    elif names:
        groups = [g for w in windows if policy_id in (None, w.policy.id)
                  for g in _alone(session, lib, w, True)]
    groups.extend(_queued(session, lib, start, end, names))
    only = lib.get(policy_id).slug if policy_id is not None else None
    found: Counter = Counter()
    named: dict[tuple, list[str]] = {}
    overdue: Counter = Counter()
    for group in groups:
        for key in group.sends:
            if only in (None, key[2]):
                found[key] += group.count
                if names:
                    named.setdefault(key, []).extend(group.who)
        for due in group.overdue:
            overdue[due] += group.count
    out = [Batch(*key, n, tuple(sorted(named.get(key, ())))) for key, n in found.items()]
    if policy_id is None:
        out.extend(_digests(svc, session, lib, overdue, start, end))
    out.sort()
    return [b for b in out if b.when == out[0].when] if first else out


@dataclass(frozen=True)
class _Window:
    """One policy's cycle, over the part of the timeline it covers."""

    policy: library.Entry
    year: int
    cycle: Cycle | None  # not made yet: nobody has been asked
    opens: dt.datetime
    start: dt.datetime
    end: dt.datetime


@dataclass
class _Group:
    """People with the same sends: `count` of them (named in `who` when asked for), their sends
    as (when, what, policy, why), and the moments they are overdue from."""

    count: int
    who: list[str]
    sends: list[tuple[dt.datetime, str, str, str, str]]
    overdue: list[dt.datetime]


def _queued(session: Session, lib: library.Library, start: dt.datetime, end: dt.datetime,
            names: bool) -> Iterator[_Group]:
    """Reminders and follow-ups already in the outbox, waiting to go: with the tick at `start`, or
    when a retry or the one-email-a-day rule lets them. The projections count them as gone at
    `start` (planner.projection), and their follow-ups from then; here they are sends of their
    own, so that what is queued is in the plan."""
    years = lib.years(start)
    if not years:
        return
    columns = [Outbox.next_attempt_at, Outbox.stage, Outbox.status, Cycle.policy_id,
               Request.reminded_at, Request.due_extended_to, Request.named_due]
    query = (select(*columns).join(Request, Request.id == Outbox.request_id)
             .join(Cycle, Cycle.id == Request.cycle_id).join(Staff, Staff.id == Request.staff_id)
             .where(Outbox.status.in_(WAITING), Outbox.kind.in_(PERSONAL),
                    Outbox.stage.is_not(None), Outbox.next_attempt_at <= end,
                    Request.closed_at.is_(None), Staff.active,
                    Staff.setting_id == lib.setting_id, Cycle.policy_id.in_(list(years)),
                    Cycle.year == case(years, value=Cycle.policy_id, else_=-1)))
    if names:
        rows = ((*row[:-2], 1, [f"{row.name} <{row.email}>"]) for row in
                session.execute(query.add_columns(Staff.name, Staff.email)))
    else:
        rows = ((*row[:-1], row[-1], []) for row in
                session.execute(query.add_columns(func.count()).group_by(*columns)))
    for at, stage, status, policy_id, reminded, extended, named, count, who in rows:
        entry = lib.get(policy_id)
        if entry is None or not entry.active:
            continue
        when = max(at, start)
        state = planner.RequestState(cycle_opens=when, start_date=None,
                                     reminded_at=reminded or when, due_extended_to=extended,
                                     named_due=named)
        by = requests.confirm_by(state, entry.calendar)
        why = "queued" + (", retrying after the mail server refused it" if status == "retrying"
                          else "")
        yield _Group(count, who, [(when, planner.stage_label(stage), entry.slug, why,
                                   by.isoformat() if by else "")], [])


def _windows(session: Session, lib: library.Library, start: dt.datetime,
             end: dt.datetime) -> Iterator[_Window]:
    for policy in lib.active:
        cal = policy.calendar
        year = cal.cycle_year(start)
        for y in range(year, cal.cycle_year(end) + 1):
            cycle = session.scalars(select(Cycle).filter_by(policy_id=policy.id, year=y)).first()
            opens = cycle.opens_at if cycle else cal.cycle_opens(y)
            yield _Window(policy, y, cycle, opens, max(start, opens if y > year else start),
                          min(end, cal.cycle_opens(y + 1)))


def _alone(session: Session, lib: library.Library, w: _Window, names: bool,
           counted: dict[int, list[tuple[tuple, int]]] | None = None) -> Iterator[_Group]:
    """The window's people grouped by state, each state planned once on its own."""
    planned: dict[tuple, tuple] = {}
    if counted is not None and w.year == w.policy.cycle_year(w.start):
        found = ((key, n, []) for key, n in counted.get(w.policy.id, ()))
    else:
        found = _states(session, lib, w, names)
    for key, count, who in found:
        if key not in planned:
            planned[key] = _plan(w, _state(w, key))
        yield _Group(count, who, *planned[key])


def _plan(w: _Window, state: planner.RequestState) -> tuple[list, list]:
    """The window's sends to a person in `state`, on their own, and when they are overdue."""
    return _described(w, state, [(when, stage, when) for when, stage
                                 in planner.projection(state, w.policy.calendar, w.start, w.end)])


def _may_meet(lib: library.Library, groups: list[_Group],
              start: dt.datetime) -> tuple[bool, bool]:
    """Whether anyone might be due two emails on one day (two policies send on a day at
    different moments), and whether anything goes on `start`'s day (when those who had an
    email earlier that day wait a day)."""
    cal = lib.calendar
    days: dict[dt.date, set] = {}
    for group in groups:
        for when, _, policy, *_ in group.sends:
            days.setdefault(cal.local_date(when), set()).add((when, policy))
    return (any(len({w for w, _ in sends}) > 1 and len({p for _, p in sends}) > 1
                for sends in days.values()), cal.local_date(start) in days)


def _together(lib: library.Library, windows: list[_Window],
              combos: Iterator[tuple[tuple, bool, int, list[str]]],
              start: dt.datetime) -> Iterator[_Group]:
    """Each combination of states people hold across the windows (their state in each, or None;
    whether they had an email on `start`'s day before it), planned once (planner.together)."""
    day_began = planner.day_starts(lib.calendar.local_date(start), lib.calendar)
    for keys, had, count, who in combos:
        mine = [(w, _state(w, key)) for w, key in zip(windows, keys) if key is not None]
        tracks = [planner.Track(state, w.policy.calendar, w.start, w.end) for w, state in mine]
        sent = planner.together(tracks, lambda i, at: lib.next_turn(mine[i][0].policy.id, at),
                                day_began if had else None)
        group = _Group(count, who, [], [])
        for i, (w, state) in enumerate(mine):
            sends, overdue = _described(w, state, [(when, stage, due) for when, j, stage, due
                                                   in sent if j == i])
            group.sends.extend(sends)
            group.overdue.extend(overdue)
        yield group


def _combined(session: Session, lib: library.Library, windows: list[_Window],
              emailed) -> Iterator[tuple[tuple, bool, int, list[str]]]:
    """The combinations of states, counted by the database: one row a combination."""
    columns = [Staff.start_date, Staff.id.in_(emailed).label("had")]
    query = select().select_from(Staff)
    for i, w in enumerate(windows):
        inside = standing.in_audience(w.policy.id, w.policy.audience)
        if w.cycle is None:
            columns.append(case((inside, 1), else_=0).label(f"in_{i}"))
            continue
        r = aliased(Request)
        query = query.outerjoin(r, (r.staff_id == Staff.id) & (r.cycle_id == w.cycle.id))
        asked = inside & r.closed_at.is_(None)
        columns.append(case((asked, 1), else_=0).label(f"in_{i}"))
        columns.extend(case((asked, getattr(r, c.key))).label(f"{c.key}_{i}")
                       for c in _STATE[1:])
    each = (query.add_columns(*columns)
            .where(Staff.active, Staff.setting_id == lib.setting_id).subquery())
    found = session.execute(select(each, func.count()).group_by(*each.c))
    for row in found:
        keys, at = [], 2
        for w in windows:
            width = 1 if w.cycle is None else len(_STATE)
            if not row[at]:
                keys.append(None)
            elif w.cycle is None:
                keys.append((row.start_date, *[None] * (len(_STATE) - 1)))
            else:
                keys.append((row.start_date, *row[at + 1:at + width]))
            at += width
        yield tuple(keys), bool(row.had), row[-1], []


def _each(session: Session, lib: library.Library, windows: list[_Window],
          emailed) -> Iterator[tuple[tuple, bool, int, list[str]]]:
    """The combinations of states, each with its people named, from every person's states."""
    people: dict[int, list] = {}
    labels: dict[int, str] = {}
    for i, w in enumerate(windows):
        for staff_id, key, label in _people(session, lib, w, True):
            people.setdefault(staff_id, [None] * len(windows))[i] = key
            labels[staff_id] = label
    had = set(session.scalars(emailed)) if people else set()
    combos: dict[tuple, list[str]] = {}
    for staff_id, keys in people.items():
        combos.setdefault((tuple(keys), staff_id in had), []).append(labels[staff_id])
    for (keys, was), who in combos.items():
        yield keys, was, len(who), sorted(who)


_STATE = standing.STATE


def _asked(lib: library.Library, w: _Window):
    """The active people in the policy's audience still to confirm in the window's cycle, and the
    columns of their state (nobody has been asked in a cycle not yet made)."""
    columns = _STATE if w.cycle is not None else (Staff.start_date, *[null()] * (len(_STATE) - 1))
    query = (select(*columns).select_from(Staff)
             .where(Staff.active, Staff.setting_id == lib.setting_id,
                    standing.in_audience(w.policy.id, w.policy.audience)))
    if w.cycle is not None:
        query = (query.outerjoin(Request, (Request.staff_id == Staff.id)
                                 & (Request.cycle_id == w.cycle.id))
                 .where(Request.closed_at.is_(None)))
    return query, columns


def _states(session: Session, lib: library.Library, w: _Window,
            names: bool) -> Iterator[tuple[tuple, int, list[str]]]:
    """(state, how many people, their "Name <address>" if `names`), grouped by state."""
    query, columns = _asked(lib, w)
    if names:
        grouped: dict[tuple, list[str]] = {}
        for staff_id, key, label in _people(session, lib, w, True):
            grouped.setdefault(key, []).append(label)
        yield from ((key, len(who), who) for key, who in grouped.items())
        return
    state_by = columns[:1] if w.cycle is None else columns
    for row in session.execute(query.add_columns(func.count()).group_by(*state_by)):
        yield tuple(row[:-1]), row[-1], []


def _people(session: Session, lib: library.Library, w: _Window,
            names: bool) -> Iterator[tuple[int, tuple, str]]:
    """(staff id, state, "Name <address>" if `names`) of each person still to confirm."""
    query, _ = _asked(lib, w)
    query = query.add_columns(Staff.id, *((Staff.name, Staff.email) if names else ()))
    for row in session.execute(query):
        yield (row[len(_STATE)], tuple(row[:len(_STATE)]),
               f"{row.name} <{row.email}>" if names else "")


def _state(w: _Window, key: tuple) -> planner.RequestState:
    start_date, stage_sent, reminded_at, last_message_at, extended, named = key
    if stage_sent is None:  # not asked yet
        return planner.RequestState(cycle_opens=w.opens, start_date=start_date)
    return planner.RequestState(cycle_opens=w.opens, start_date=start_date, stage_sent=stage_sent,
                                reminded_at=reminded_at, last_message_at=last_message_at,
                                due_extended_to=extended, named_due=named)


def _emailed(lib: library.Library, start: dt.datetime):
    """Who has had a scheduled email on `start`'s day, before it (their staff ids)."""
    since = planner.day_starts(lib.calendar.local_date(start), lib.calendar)
    return (select(Outbox.staff_id)
            .where(Outbox.kind.in_(PERSONAL), Outbox.stage.is_not(None), Outbox.status == "sent",
                   Outbox.sent_at >= since, Outbox.sent_at <= start, Outbox.staff_id.is_not(None)))


def _described(w: _Window, state: planner.RequestState,
               sends: list[tuple[dt.datetime, int, dt.datetime]]) -> tuple[list, list]:
    """The window's sends to a person in `state` (when, stage, when it was due) as (when, what,
    policy, why); and, once their first reminder has gone (or will have by then), the moment
    they are overdue, if the window reaches it."""
    cal = w.policy.calendar
    out = []
    reminded = state.reminded_at
    if reminded is None and state.stage_sent >= planner.REMINDER:
        reminded = w.start  # queued and not gone yet: it goes with the tick at the start
    for when, stage, due in sends:
        if stage == planner.REMINDER:
            reminded = when
            why = _first_reminder_why(cal, w.year, w.opens, state.start_date, due)
            planned = planner.first_reminder_day(state, cal)
        else:
            days = cal.schedule.reminder_after_days[stage - 1]
            why = f"{days} days after first reminder ({cal.local_date(reminded):%-d %b})"
            planned = planner.followup_day(reminded, stage, cal)
            why += _not_counted(cal, cal.local_date(reminded), planned)
        why += _moved(cal, due, planned)
        by = requests.confirm_by(replace(state, reminded_at=reminded), cal)
        if due < when:
            why += f"; waited from {due.astimezone(cal.tz):%a %-d %b %H:%M}: one email a day"
        out.append((when, planner.stage_label(stage), w.policy.slug, why,
                    by.isoformat() if by else ""))
    if reminded is None:
        return out, []
    due = requests.confirm_by(replace(state, reminded_at=reminded), cal)
    overdue = planner.day_starts(due + dt.timedelta(days=1), cal)
    return out, [overdue] if overdue <= w.end else []


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
                    f"{count} overdue by then" + _moved(cal, due, planned), "", 1,
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


def _not_counted(cal, after: dt.date, upto: dt.date) -> str:
    """Say which closures between two days were not counted (closed days do not count)."""
    names = [c.name for c in cal.closures if c.first <= upto and c.last > after]
    return f", not counting {', '.join(dict.fromkeys(names))}" if names else ""


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


CSV_COLUMNS = ("send_at", "email", "name", "policy", "kind", "confirm_by")


def render_csv(svc: Services, session: Session, start: dt.datetime,
               end: dt.datetime) -> Iterator[str]:
    """`plan --format csv`: one row per policy named in each email the plan foresees, and one
    per digest (CSV_COLUMNS); times in the setting's time zone, with their offset."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="")
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue()
    for e in entries(svc, session, start, end):
        out.seek(0)
        out.truncate()
        name, email = e.name_and_email
        writer.writerow([e.when.astimezone(svc.tz).isoformat(timespec="seconds"), email, name,
                         "" if e.kind == "digest" else e.policy, e.kind, e.confirm_by])
        yield out.getvalue()


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
