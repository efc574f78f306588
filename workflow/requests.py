"""A request's life, in one place: asked, queued, reached, extended, confirmed, exempted, declined,
reopened, dropped, asked again, and re-planned when the rules change.

Nothing else writes a request's state (`stage_sent`, `reminded_at`, `last_message_at`,
`next_check_at`, `overdue_at`, `named_due`, `due_extended_to`, `closed_at` and the reasons it is
closed: tests/test_requests.py reads the package to keep it so). The dates stored here are hints
for the database's indexes: `next_check_at` says when the tick should look again, `overdue_at`
when the person becomes overdue. Both are derived from the planner's one rule (`derive`); a change
to the rule's inputs (a schedule, a closure, a start date) calls `replan`, which derives them again
for every open request it touches, so the console, the plan, the report and the digest read the
same dates. A date to confirm by that an email has named (`named_due`) is never moved earlier.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import bindparam, case, literal, select, update
from sqlalchemy.orm import Session

from . import events, planner, standing
from .models import Cycle, Request, Staff, UTCDateTime
from .planner import RequestState

if TYPE_CHECKING:
    from .calendar import Calendar
    from .library import Library

_R = Request.__table__.c
_WHEN = UTCDateTime()


# --- the rule ----------------------------------------------------------------------------------

def confirm_by(state: RequestState, cal: Calendar) -> dt.date | None:
    """The date to confirm by: the planner's (counted from the first reminder, or an admin's
    extension), never earlier than one an email has already named to the person."""
    named = state.named_due
    rule = planner.due_date(state.reminded_at, cal, state.due_extended_to)
    if rule is None:
        return named
    return max(rule, named) if named is not None else rule


def derive(state: RequestState, cal: Calendar,
           now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """An open request's stored hints from its state: (next_check_at, overdue_at)."""
    due = confirm_by(state, cal)
    overdue = planner.day_starts(due + dt.timedelta(days=1), cal) if due is not None else None
    return planner.next_check(state, cal, now), overdue


def state_of(row) -> RequestState:
    """A request's state from a row with the request's and its cycle's and person's columns."""
    return RequestState(cycle_opens=row.opens_at, start_date=row.start_date,
                        stage_sent=row.stage_sent, reminded_at=row.reminded_at,
                        last_message_at=row.last_message_at, due_extended_to=row.due_extended_to,
                        named_due=row.named_due)


_STATE = (_R.id, _R.staff_id, _R.stage_sent, _R.reminded_at, _R.last_message_at,
          _R.due_extended_to, _R.named_due, _R.next_check_at, _R.overdue_at,
          Cycle.opens_at, Cycle.policy_id, Staff.start_date)


# --- asked -------------------------------------------------------------------------------------

def ask_missing(session: Session, db_insert, setting_id: int, cycle: Cycle, now: dt.datetime) -> int:
    """A request for every active person in the policy's audience who has none in `cycle` (new
    starters included), to be looked at now. Returns how many were made.

    NOT IN rather than NOT EXISTS: PostgreSQL then reads the cycle's requests once, into a hash.
    Planned as an anti-join instead, on a cycle with no requests yet (its opening day), it may
    choose a nested loop that rescans the rows this very statement is inserting: quadratic in the
    number of staff.
    """
    asked = select(Request.staff_id).where(Request.cycle_id == cycle.id)
    missing = (select(literal(cycle.id), Staff.id, literal(now, _WHEN), literal(-1),
                      literal(now, _WHEN))
               .where(Staff.setting_id == setting_id, Staff.active, Staff.id.not_in(asked),
                      standing.in_audience(cycle.policy_id)))
    return session.execute(db_insert(Request.__table__).from_select(
        ["cycle_id", "staff_id", "created_at", "stage_sent", "next_check_at"], missing)).rowcount or 0


def ask(session: Session, db_insert, cycle_id: int, staff_id: int, now: dt.datetime) -> Request:
    """The person's request in the cycle, made now if the tick has not reached them yet."""
    session.execute(db_insert(Request.__table__).values(
        cycle_id=cycle_id, staff_id=staff_id, created_at=now, stage_sent=-1, next_check_at=now))
    return session.scalars(select(Request).filter_by(cycle_id=cycle_id, staff_id=staff_id)).one()


def follow_audiences(session: Session, cycle: Cycle, has_audience: bool,
                     now: dt.datetime) -> int:
    """Stop chasing whoever has left the policy's audience (their groups or its audience changed):
    their open request is closed as no longer applying, kept with its history. Someone back in
    the audience has theirs opened again, to be looked at now. Returns how many were closed."""
    inside = standing.in_audience(cycle.policy_id)
    # A policy for everyone has nobody outside its audience: its open requests are not read.
    leaving = [] if not has_audience else session.execute(
        select(Request.id, Request.staff_id).join(Staff, Staff.id == Request.staff_id)
        .where(Request.cycle_id == cycle.id, Request.closed_at.is_(None), ~inside)).all()
    _move(session, cycle, leaving, "no_longer_applies", now,
          dropped_at=now, closed_at=now, next_check_at=None)
    back = session.execute(
        select(Request.id, Request.staff_id).join(Staff, Staff.id == Request.staff_id)
        .where(Request.cycle_id == cycle.id, Request.dropped_at.is_not(None), inside)).all()
    _move(session, cycle, back, "applies_again", now,
          dropped_at=None, closed_at=None, next_check_at=now)
    return len(leaving)


def _move(session: Session, cycle: Cycle, found: list, event: str, now: dt.datetime,
          **values) -> None:
    """Set `values` on the requests `found` ((id, staff id) rows), each with its event."""
    if not found:
        return
    session.execute(update(Request.__table__).where(_R.id.in_([rid for rid, _ in found]))
                    .values(**values))
    session.execute(events.INSERT, [events.row(event, now, staff_id=staff_id, request_id=rid,
                                               policy=cycle.policy.slug)
                                    for rid, staff_id in found])


# --- queued and reached -------------------------------------------------------------------------

# What a tick stores of each request it looked at (planner.queue): the stage handed to the
# outbox, today's message, and when to look again.
QUEUED = (update(Request.__table__).where(_R.id == bindparam("rid"))
          .values(stage_sent=bindparam("stage"), last_message_at=bindparam("last", type_=_WHEN),
                  next_check_at=bindparam("next", type_=_WHEN)))


def queued(conn, changes: list[dict]) -> None:
    """Store what the tick planned for each request: {rid, stage, last, next}."""
    if changes:
        conn.execute(QUEUED, changes)


def queue_first(req: Request) -> None:
    """An admin's fresh link before anything was sent is the first reminder, queued as the tick
    would: looked at again once it has gone (after_outcome)."""
    req.stage_sent = planner.REMINDER
    req.next_check_at = None


_ADVANCE = (update(Request.__table__).where(_R.id == bindparam("request_id"))
            .values({**{name: bindparam(name, type_=_WHEN) for name in
                        ("reminded_at", "last_message_at", "overdue_at", "next_check_at")},
                     "named_due": bindparam("named_due")}))


def after_outcome(conn, lib: Library, request_ids: list[int], at: dt.datetime,
                  named: dict[int, dt.date] | None = None) -> int | None:
    """A message to the person has had its outcome at `at` (sent, or failed for good): each
    request's clock starts (the first reminder) or moves on, and `named` holds the date to
    confirm by the email named for each request it reached. Returns the person's id."""
    named = named or {}
    changes, staff_id = [], None
    for row in conn.execute(_SELECT_STATE, {"request_ids": request_ids}):
        entry = lib.get(row.policy_id)
        cal = entry.calendar if entry is not None else lib.calendar  # retired while in the outbox
        said = named.get(row.id, row.named_due)
        state = replace(planner.after_send(state_of(row), at), named_due=said)
        next_check, overdue = derive(state, cal, at)
        changes.append({"request_id": row.id, "reminded_at": state.reminded_at,
                        "last_message_at": state.last_message_at, "overdue_at": overdue,
                        "next_check_at": next_check, "named_due": said})
        staff_id = row.staff_id
    if changes:
        conn.execute(_ADVANCE, changes)
    return staff_id


def step_back(session: Session, request_id: int, stage: int, now: dt.datetime) -> None:
    """A queued stage was not sent (the person was made inactive meanwhile): ask it afresh if
    they are made active again this cycle."""
    req = session.get(Request, request_id)
    req.stage_sent = min(req.stage_sent, stage - 1)
    req.next_check_at = now


def escalated(session: Session, request_ids: list[int], now: dt.datetime, digest_key: str) -> None:
    """Named in the head teacher's digest (`escalated_at`: the first time)."""
    for req in session.scalars(select(Request).where(Request.id.in_(request_ids))):
        if req.escalated_at is None:
            req.escalated_at = now
        events.record(session, "escalated", now, staff_id=req.staff_id, request_id=req.id,
                      digest=digest_key)


# --- what the office or the person did ----------------------------------------------------------

def extend(req: Request, cal: Calendar, day: dt.date) -> None:
    """An admin gave the person until `day` (the caller checked it is later than now and than
    their date to confirm by)."""
    req.due_extended_to = cal.slot(day)
    if req.reminded_at is not None:  # else it is set when the first reminder goes
        due = due_on(req.reminded_at, req.due_extended_to, req.named_due, cal)
        req.overdue_at = planner.day_starts(due + dt.timedelta(days=1), cal)


def current_due(req: Request, cal: Calendar) -> dt.date | None:
    """The date to confirm by the request has now (None before the first reminder went, unless
    extended)."""
    return due_on(req.reminded_at, req.due_extended_to, req.named_due, cal)


def confirm_by_of(req: Request | None, start_date: dt.date | None, cal: Calendar,
                  opens: dt.datetime, now: dt.datetime) -> dt.date:
    """The date to confirm by of a person in a cycle opening at `opens`: the one their latest
    reminder named, or the one their first will name when it goes (on its planned day, or now
    if that has passed)."""
    if req is not None and (req.reminded_at or req.due_extended_to or req.named_due):
        return current_due(req, cal)
    first = planner.first_reminder_due(RequestState(cycle_opens=opens, start_date=start_date), cal)
    return due_on(max(first, now), None, None, cal)


def confirm(req: Request, now: dt.datetime) -> bool:
    """The person (or the office, on paper) confirmed: the request closes. Returns whether they
    had declined it (their open decline is resolved by this)."""
    had_declined = req.declined_at is not None
    req.closed_at, req.next_check_at, req.declined_at = now, None, None
    return had_declined


def exempt(req: Request, reason: str, now: dt.datetime) -> None:
    req.exempt_at, req.exempt_reason = now, reason
    req.closed_at, req.next_check_at = now, None


def decline(session: Session, request_id: int, now: dt.datetime) -> bool:
    """The person said they cannot confirm: chasing stops, unless the request is closed already
    (a repeat keeps the first). Returns whether it was closed now."""
    return bool(session.execute(
        update(Request).where(Request.id == request_id, Request.closed_at.is_(None))
        .values(declined_at=now, closed_at=now, next_check_at=None)).rowcount)


def reopen(req: Request, now: dt.datetime) -> None:
    """A decline resolved by asking again: the next tick sends what is due."""
    req.declined_at = None
    req.closed_at, req.next_check_at = None, now


def excuse(req: Request, reason: str, now: dt.datetime) -> None:
    """A decline resolved by excusing them: exempt this cycle."""
    req.declined_at = None
    req.exempt_at, req.exempt_reason = now, reason


def ask_again(session: Session, older, now: dt.datetime) -> None:
    """A material change came into force: the requests `older` selects (their ids) start afresh in
    a new round, so that the next tick sends a first reminder and follow-ups count from it; the
    dates an earlier email named no longer hold."""
    session.execute(update(Request).where(Request.id.in_(older)).values(
        round=Request.round + 1, closed_at=None, stage_sent=-1, reminded_at=None,
        last_message_at=None, overdue_at=None, escalated_at=None, due_extended_to=None,
        named_due=None, next_check_at=now))


# --- re-planned when the rules change -----------------------------------------------------------

def after_change(session: Session, lib: Library, now: dt.datetime, *,
                 policy_ids: Iterable[int] | None = None,
                 staff_ids: Iterable[int] | None = None) -> int:
    """A change to the library or the roster (`lib`: as it is now, the change made) acts at once
    on the requests already open in each policy's current cycle: whoever has left its audience
    stops being chased, whoever is back is asked again, and every date is derived again. Returns
    how many requests changed."""
    years = lib.years(now)
    wanted = set(years if policy_ids is None else policy_ids)
    changed = 0
    for cycle in session.scalars(select(Cycle).where(Cycle.policy_id.in_(wanted & set(years)))):
        entry = lib.get(cycle.policy_id)
        if cycle.year == years[cycle.policy_id] and entry.active:
            changed += follow_audiences(session, cycle, bool(entry.audience), now)
    return changed + replan(session, lib, now, policy_ids=wanted, staff_ids=staff_ids)


def replan(session: Session, lib: Library, now: dt.datetime, *,
           policy_ids: Iterable[int] | None = None,
           staff_ids: Iterable[int] | None = None) -> int:
    """Derive the stored hints again for every open request of the policies' current cycles (or
    of `staff_ids` only), after a schedule, closure, audience, start date or policy changed; set-
    based, in batches. People in the same state are derived once. Returns how many changed."""
    years = lib.years(now)
    wanted = [pid for pid in (years if policy_ids is None else policy_ids) if pid in years]
    if not wanted:
        return 0
    query = (select(*_STATE).join(Cycle, Cycle.id == _R.cycle_id).join(Staff, Staff.id == _R.staff_id)
             .where(Cycle.policy_id.in_(wanted),
                    Cycle.year == case(years, value=Cycle.policy_id, else_=-1),
                    _R.closed_at.is_(None),
                    _R.id > bindparam("after")).order_by(_R.id).limit(BATCH))
    if staff_ids is not None:
        query = query.where(_R.staff_id.in_(list(staff_ids)))
    derived: dict[tuple, tuple] = {}
    changed, after = 0, 0
    while True:
        rows = session.execute(query, {"after": after}).all()
        if not rows:
            return changed
        after = rows[-1].id
        updates = []
        for row in rows:
            cal = lib.get(row.policy_id).calendar
            key = (row.policy_id, row.start_date, row.stage_sent, row.opens_at,
                   _day(row.reminded_at, cal), _day(row.last_message_at, cal),
                   row.due_extended_to, row.named_due)
            if key not in derived:
                derived[key] = derive(state_of(row), cal, now)
            next_check, overdue = derived[key]
            if row.stage_sent >= planner.REMINDER and row.reminded_at is None:
                next_check = row.next_check_at  # in the outbox: set again once it has gone
            if (next_check, overdue) != (row.next_check_at, row.overdue_at):
                updates.append({"rid": row.id, "next": next_check, "overdue": overdue})
        if updates:
            session.execute(_REPLANNED, updates)
            changed += len(updates)


BATCH = 5000
_REPLANNED = (update(Request.__table__).where(_R.id == bindparam("rid"))
              .values(next_check_at=bindparam("next", type_=_WHEN),
                      overdue_at=bindparam("overdue", type_=_WHEN)))
_SELECT_STATE = (select(*_STATE).join(Cycle, _R.cycle_id == Cycle.id)
                 .join(Staff, _R.staff_id == Staff.id)
                 .where(_R.id.in_(bindparam("request_ids", expanding=True))))


def _day(moment: dt.datetime | None, cal: Calendar) -> dt.date | None:
    return cal.local_date(moment) if moment is not None else None


def due_on(reminded_at, extended_to, named, cal: Calendar) -> dt.date | None:
    """confirm_by from the three columns it reads (a request row need not be joined)."""
    return confirm_by(RequestState(cycle_opens=reminded_at, start_date=None,
                                   reminded_at=reminded_at, due_extended_to=extended_to,
                                   named_due=named), cal)
