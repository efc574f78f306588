"""The head teacher's digest: one email listing every overdue person, when someone first becomes
overdue and then every `digest_every_days` while anyone is."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import events, planner, policies, sends, standing
from .services import Services
from .models import Outbox, Policy, Request, Staff


@dataclass(frozen=True)
class Overdue:
    request_id: int
    name: str
    email: str
    policy: str
    days_outstanding: int
    reminders_sent: int
    delivery_problem: str | None


def overdue_people(svc: Services, session: Session, now: dt.datetime) -> list[Overdue]:
    """Everyone the console shows as overdue in a current cycle (see `standing`)."""
    sent, latest = sends.counts(), sends.latest()
    rows = session.execute(
        standing.people(svc, now)
        .with_only_columns(Request.id, Staff.name, Staff.email, Policy.title, Request.reminded_at,
                           func.coalesce(sent.c.n, 0), latest.c.status, latest.c.last_error)
        .outerjoin(sent, sent.c.request_id == Request.id)
        .outerjoin(latest, latest.c.request_id == Request.id)
        .where(standing.status_in(now, "overdue"))
        .order_by(None).order_by(Request.reminded_at, Staff.name))
    cal = svc.calendar
    # Calendar days in the setting's time zone: a digest at 08:00 counts the reminder of 08:00
    # three weeks before as 21 days, whatever the seconds each took to go.
    return [Overdue(rid, name, email, title,
                    (cal.local_date(now) - cal.local_date(reminded or now)).days, count,
                    error if sends.problem(status, error) else None)
            for rid, name, email, title, reminded, count, status, error in rows]


@dataclass(frozen=True)
class Undeliverable:
    request_id: int
    name: str
    email: str
    policy: str
    problem: str


def undeliverable(svc: Services, session: Session, now: dt.datetime) -> list[Undeliverable]:
    """People not overdue yet whose latest email failed: the head teacher hears in the next digest,
    not weeks later when they become overdue (by then the bounced address has cost them the time)."""
    latest = sends.latest()
    rows = session.execute(
        standing.people(svc, now)
        .with_only_columns(Request.id, Staff.name, Staff.email, Policy.title, latest.c.last_error)
        .join(latest, latest.c.request_id == Request.id)
        .where(latest.c.status == "failed", standing.status_in(now, "pending"))
        .order_by(None).order_by(Staff.name))
    return [Undeliverable(*row) for row in rows]


def summary(svc: Services, session: Session, now: dt.datetime) -> list[dict[str, Any]]:
    """Per policy whose current cycle is open: confirmed X of Y (Y leaves out exempt people), the
    dashboard's counts, for the digest's summary line."""
    found = standing.tallies(svc, session, now)
    out = []
    for policy in policies.configured(session, svc.config):
        if standing.current_cycle(svc, session, policy, now) is None:
            continue
        t = found.get(policy.id, standing.Tally())
        out.append({"policy": policy.title, "confirmed": t.confirmed, "total": t.expected,
                    "exempt": t.exempt})
    return out


def digest_context(svc: Services, session: Session, now: dt.datetime) -> dict[str, Any]:
    return {"overdue": overdue_people(svc, session, now), "summary": summary(svc, session, now),
            "undeliverable": undeliverable(svc, session, now),
            "head": svc.config.head_teacher, "today": now.astimezone(svc.calendar.tz),
            "escalate_after_days": svc.config.schedule.escalate_after_days,
            "digest_every_days": svc.config.schedule.digest_every_days}


def last_digest_day(svc: Services, session: Session) -> dt.date | None:
    latest = session.scalars(select(Outbox.created_at)
                             .where(Outbox.kind == "digest", Outbox.status != "cancelled")
                             .order_by(Outbox.created_at.desc()).limit(1)).first()
    return svc.calendar.local_date(latest) if latest else None


def next_due(svc: Services, session: Session, now: dt.datetime) -> dt.datetime | None:
    """When the next digest is due, counted from the first moment anyone still to confirm is (or
    will be) overdue."""
    earliest = session.scalar(standing.people(svc, now)
                              .with_only_columns(func.min(standing.overdue_from()))
                              .where(standing.status_in(now, "pending", "overdue"))
                              .order_by(None))
    if earliest is None:
        return None
    return planner.next_digest_due(earliest, last_digest_day(svc, session), svc.calendar)


def mark_escalated(session: Session, row: Outbox, now: dt.datetime) -> None:
    ids = (row.payload or {}).get("request_ids", [])
    for request in session.scalars(select(Request).where(Request.id.in_(ids))):
        if request.escalated_at is None:
            request.escalated_at = now
        events.record(session, "escalated", now, staff_id=request.staff_id, request_id=request.id,
                      digest=row.key)
