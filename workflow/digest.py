"""The head teacher's digest: one email across all policies listing every overdue person once, with
each policy they have not confirmed, on the day someone first becomes overdue (the day after the
date their reminders asked for) and then every `digest_every_days` while anyone is. Its people
and counts are the console's (`standing`), and its reminders sent and delivery problems the
report's (`sends`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import planner, sends, standing
from .library import Library
from .services import Services
from .models import Outbox, Policy, Request, Staff


@dataclass(frozen=True)
class Overdue:
    request_id: int
    name: str
    role: str
    email: str
    policy: str
    due_date: dt.date  # the date their reminders asked them to confirm by
    days_past: int  # whole days since that date: 1 on the day after it
    reminders_sent: int  # as the report counts them (`sends.counts`)
    delivery_problem: str | None  # as the report says it (`sends.problem`)


def overdue_people(lib: Library, session: Session, now: dt.datetime) -> list[Overdue]:
    """Everyone the console shows as overdue in a current cycle (see `standing`), longest overdue
    first."""
    sent, latest = sends.counts(now), sends.latest(now)
    rows = session.execute(
        standing.people(lib, now)
        .with_only_columns(Request.id, Staff.name, Staff.role, Staff.email, Policy.title,
                           standing.overdue_from(), func.coalesce(sent.c.n, 0), latest.c.status,
                           latest.c.last_error)
        .outerjoin(sent, sent.c.request_id == Request.id)
        .outerjoin(latest, latest.c.request_id == Request.id)
        .where(standing.status_in(now, "overdue"))
        .order_by(None).order_by(standing.overdue_from(), func.lower(Staff.name), Staff.email,
                                 Policy.position, Policy.id))  # a person's in the console's order
    cal = lib.calendar
    return [Overdue(rid, name, role or "", email, title, planner.due_date_before(overdue, cal),
                    planner.days_past(overdue, cal, now), count, sends.problem(status, error))
            for rid, name, role, email, title, overdue, count, status, error in rows]


@dataclass(frozen=True)
class Undeliverable:
    request_id: int
    name: str
    role: str
    email: str
    policy: str
    problem: str


def undeliverable(lib: Library, session: Session, now: dt.datetime) -> list[Undeliverable]:
    """People not overdue yet whose latest email failed: the head teacher hears in the next digest,
    not weeks later when they become overdue (by then the bounced address has cost them the time)."""
    latest = sends.latest(now)
    rows = session.execute(
        standing.people(lib, now)
        .with_only_columns(Request.id, Staff.name, Staff.role, Staff.email, Policy.title,
                           latest.c.status, latest.c.last_error)
        .join(latest, latest.c.request_id == Request.id)
        .where(latest.c.status == "failed", standing.status_in(now, "pending"))
        .order_by(None).order_by(func.lower(Staff.name), Staff.email))
    return [Undeliverable(rid, name, role or "", email, title, sends.problem(status, error) or "")
            for rid, name, role, email, title, status, error in rows]


def summary(lib: Library, session: Session, now: dt.datetime) -> list[dict[str, Any]]:
    """Per policy whose current cycle is open: confirmed X of Y (Y leaves out exempt people) and
    how many are overdue, the dashboard's counts (`standing.tallies`), for the summary lines."""
    found = standing.tallies(lib, session, now)
    out = []
    for policy in standing.in_use(lib, session):
        if standing.current_cycle(lib, session, policy, now) is None:
            continue
        t = found.get(policy.id, standing.Tally())
        out.append({"policy": policy.title, "confirmed": t.confirmed, "total": t.expected,
                    "exempt": t.exempt, "overdue": t.overdue})
    return out


@dataclass(frozen=True)
class Person:
    """One person in the digest, with their lines (Overdue or Undeliverable), one per policy."""

    name: str
    role: str
    email: str
    lines: tuple


def by_person(lines: list) -> list[Person]:
    """`lines` grouped by person, each person where their first line was (longest overdue first)."""
    grouped: dict[str, list] = {}
    for line in lines:
        grouped.setdefault(line.email, []).append(line)
    return [Person(found[0].name, found[0].role, email, tuple(found))
            for email, found in grouped.items()]


def people_link(svc: Services) -> str:
    """The console's people page, showing the overdue only."""
    return f"{svc.config.setting.base_url}/admin/people?status=overdue"


def digest_context(svc: Services, session: Session, now: dt.datetime) -> dict[str, Any]:
    lib = svc.library(session)
    overdue = overdue_people(lib, session, now)
    undelivered = undeliverable(lib, session, now)
    return {"overdue": overdue, "summary": summary(lib, session, now),
            "people": by_person(overdue), "undeliverable": by_person(undelivered),
            # The column and the word about wrong addresses only when there is a problem to show.
            "delivery_problems": any(p.delivery_problem for p in overdue),
            "any_problem": bool(undelivered) or any(p.delivery_problem for p in overdue),
            "people_link": people_link(svc),
            "head": svc.config.head_teacher, "today": now.astimezone(lib.tz),
            "digest_every_days": lib.calendar.schedule.digest_every_days}


def last_digest_day(lib: Library, session: Session) -> dt.date | None:
    latest = session.scalars(select(Outbox.created_at)
                             .where(Outbox.kind == "digest", Outbox.status != "cancelled")
                             .order_by(Outbox.created_at.desc()).limit(1)).first()
    return lib.calendar.local_date(latest) if latest else None


def next_due(session: Session, lib: Library, now: dt.datetime) -> dt.datetime | None:
    """When the next digest is due, counted from the first moment anyone still to confirm is (or
    will be) overdue. On the setting's own schedule: one digest across all policies."""
    earliest = session.scalar(standing.open_requests(lib, now)
                              .with_only_columns(func.min(standing.overdue_from())))
    if earliest is None:
        return None
    return planner.next_digest_due(earliest, last_digest_day(lib, session), lib.calendar)
