"""The head teacher's digest: one email listing every overdue person, when someone first becomes
overdue and then every `digest_every_days` while anyone is."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from . import delivery, events, planner
from .app import Services
from .models import Confirmation, Cycle, Outbox, Policy, Request, Staff


@dataclass(frozen=True)
class Overdue:
    request_id: int
    name: str
    email: str
    policy: str
    days_outstanding: int
    reminders_sent: int
    delivery_problem: str | None


def current_cycle_ids(svc: Services, session: Session, now: dt.datetime) -> list[int]:
    slugs = [p.slug for p in svc.config.policies]
    return list(session.scalars(
        select(Cycle.id).join(Policy).where(Policy.slug.in_(slugs),
                                            Cycle.year == svc.calendar.cycle_year(now))))


def _overdue_filter(cycle_ids: list[int], now: dt.datetime):
    return and_(Request.cycle_id.in_(cycle_ids), Request.closed_at.is_(None), Staff.active,
                Request.overdue_at <= now)


def overdue_people(svc: Services, session: Session, now: dt.datetime) -> list[Overdue]:
    cycle_ids = current_cycle_ids(svc, session, now)
    sent, latest = delivery.sends(), delivery.latest()
    rows = session.execute(
        select(Request.id, Staff.name, Staff.email, Policy.title, Request.reminded_at,
               func.coalesce(sent.c.n, 0), latest.c.status, latest.c.last_error)
        .join(Staff, Request.staff_id == Staff.id)
        .join(Cycle, Request.cycle_id == Cycle.id).join(Policy, Cycle.policy_id == Policy.id)
        .outerjoin(sent, sent.c.request_id == Request.id)
        .outerjoin(latest, latest.c.request_id == Request.id)
        .where(_overdue_filter(cycle_ids, now))
        .order_by(Request.reminded_at, Staff.name))
    return [Overdue(rid, name, email, title, (now - (reminded or now)).days, count,
                    error if delivery.problem(status, error) else None)
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
    cycle_ids = current_cycle_ids(svc, session, now)
    latest = delivery.latest()
    rows = session.execute(
        select(Request.id, Staff.name, Staff.email, Policy.title, latest.c.last_error)
        .join(latest, latest.c.request_id == Request.id)
        .join(Staff, Request.staff_id == Staff.id)
        .join(Cycle, Request.cycle_id == Cycle.id).join(Policy, Cycle.policy_id == Policy.id)
        .where(latest.c.status == "failed",
               Request.cycle_id.in_(cycle_ids), Request.closed_at.is_(None), Staff.active,
               or_(Request.overdue_at.is_(None), Request.overdue_at > now))
        .order_by(Staff.name))
    return [Undeliverable(*row) for row in rows]


def summary(svc: Services, session: Session, now: dt.datetime) -> list[dict[str, Any]]:
    """Per policy: confirmed X of Y (Y leaves out exempt people), for the digest's summary line."""
    cycle_ids = current_cycle_ids(svc, session, now)
    rows = session.execute(
        select(Policy.title,
               func.count(Confirmation.id),
               func.count(Request.id) - func.count(Request.exempt_at),
               func.count(Request.exempt_at))
        .select_from(Request).join(Staff, Request.staff_id == Staff.id)
        .join(Cycle, Request.cycle_id == Cycle.id).join(Policy, Cycle.policy_id == Policy.id)
        .outerjoin(Confirmation, Confirmation.request_id == Request.id)
        .where(Request.cycle_id.in_(cycle_ids), Staff.active)
        .group_by(Policy.title).order_by(Policy.title))
    return [{"policy": title, "confirmed": confirmed, "total": total, "exempt": exempt}
            for title, confirmed, total, exempt in rows]


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
    cycle_ids = current_cycle_ids(svc, session, now)
    earliest = session.scalar(select(func.min(Request.overdue_at))
                              .join(Staff, Request.staff_id == Staff.id)
                              .where(Request.cycle_id.in_(cycle_ids), Request.closed_at.is_(None),
                                     Staff.active, Request.overdue_at.is_not(None)))
    if earliest is None:
        return None
    return planner.next_digest_due(earliest, last_digest_day(svc, session), svc.calendar)


def enqueue_if_due(svc: Services, session: Session, now: dt.datetime) -> bool:
    due = next_due(svc, session, now)
    if due is None or due > now:
        return False
    from .outbox import enqueue

    head = svc.config.head_teacher
    # Keyed by the day it goes, not the day it was due: after downtime, one digest, not a backlog.
    enqueue(session, svc.db.insert, key=f"digest:{svc.calendar.local_date(now).isoformat()}",
            kind="digest", to_email=head.email, to_name=head.name, now=now)
    return True


def mark_escalated(session: Session, row: Outbox, now: dt.datetime) -> None:
    ids = (row.payload or {}).get("request_ids", [])
    for request in session.scalars(select(Request).where(Request.id.in_(ids))):
        if request.escalated_at is None:
            request.escalated_at = now
        events.record(session, "escalated", now, staff_id=request.staff_id, request_id=request.id,
                      digest=row.key)
