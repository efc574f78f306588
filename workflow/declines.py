""""I can't confirm this": a person tells us on their page that they cannot honestly confirm a
policy, which statement and why (a parent who is also a relative is their friend online, say).

Chasing that policy stops for them (the request is closed as declined), and the head teacher
hears at once, in an email of its own. The head teacher or the office then records how it was
resolved: asked again (the request reopens and its reminders resume) or excused this cycle
(exempt). Until then, and after, the person can still confirm from the same link. Every decline
is kept with its resolution, for the evidence."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import events, outbox, requests
from .models import Cycle, Decline, Policy, Request, Staff
from .services import Services

REASON_MAX = 2000
# How a decline may be resolved, as the console offers it.
OUTCOMES = {"reopened": "Ask them to confirm again: their reminders start again",
            "excused": "Excuse them from this cycle: they are exempt"}


def record(svc: Services, request_id: int, *, statement: str | None, reason: str,
           now: dt.datetime, ip: str | None = None, agent: str | None = None) -> bool:
    """Record that the person cannot confirm, unless their request is closed already (confirmed,
    exempt, no longer applying, or declined: a repeat keeps the first); returns whether it was
    recorded. Queues the head teacher's email in the same transaction."""
    head = svc.config.head_teacher
    with svc.db.write() as session:
        if not requests.decline(session, request_id, now):
            return False
        decline = Decline(request_id=request_id, declined_at=now, statement=statement,
                          reason=reason, ip_address=ip, user_agent=agent)
        session.add(decline)
        session.flush()
        staff_id = session.scalar(select(Request.staff_id).where(Request.id == request_id))
        events.record(session, "declined", now, actor="staff", staff_id=staff_id,
                      request_id=request_id, statement=statement, reason=reason, ip=ip)
        outbox.enqueue(session, svc.db.insert, key=f"declined:{decline.id}", kind="declined",
                       to_email=head.email, to_name=head.name, now=now, request_id=request_id,
                       payload={"decline_id": decline.id})
    return True


def open_decline(session: Session, request_id: int) -> Decline | None:
    """The request's decline still waiting for a decision, if any."""
    return session.scalars(select(Decline).where(Decline.request_id == request_id,
                                                 Decline.resolved_at.is_(None))
                           .order_by(Decline.id.desc()).limit(1)).first()


def resolve(session: Session, req: Request, *, outcome: str, note: str, actor: str,
            now: dt.datetime) -> Decline:
    """Record how the request's open decline was resolved: `reopened` (asked again from now, as a
    tick would: the next run sends what is due) or `excused` (exempt this cycle, the decline and
    the note as the reason). The caller has checked that one is open."""
    decline = open_decline(session, req.id)
    decline.resolved_at, decline.resolved_by = now, actor
    decline.outcome, decline.resolution = outcome, note
    if outcome == "reopened":
        requests.reopen(req, now)
    else:
        requests.excuse(req, f"Could not confirm: {decline.reason} — {note}", now)
    events.record(session, "decline_resolved", now, actor=actor, staff_id=req.staff_id,
                  request_id=req.id, outcome=outcome, note=note)
    return decline


def confirmed(session: Session, req: Request, now: dt.datetime, actor: str) -> None:
    """They confirmed after all: their open decline is resolved by it."""
    decline = open_decline(session, req.id)
    if decline is not None:
        decline.resolved_at, decline.resolved_by = now, actor
        decline.outcome = "confirmed"


def email_context(svc: Services, session: Session, decline_id: int) -> dict[str, Any] | None:
    """The head teacher's email about a decline; None once it is resolved (they confirmed, or
    someone has decided already), when there is nothing to tell."""
    found = session.execute(
        select(Decline, Staff, Policy.title).join(Request, Request.id == Decline.request_id)
        .join(Staff, Staff.id == Request.staff_id).join(Cycle, Cycle.id == Request.cycle_id)
        .join(Policy, Policy.id == Cycle.policy_id).where(Decline.id == decline_id)).first()
    if found is None or found[0].resolved_at is not None:
        return None
    decline, person, title = found
    base = svc.config.setting.base_url
    return {"decline": decline, "person": person, "policy": title,
            "declined_local": decline.declined_at.astimezone(svc.tz),
            "person_link": f"{base}/admin/people/{person.id}",
            "head": svc.config.head_teacher}
