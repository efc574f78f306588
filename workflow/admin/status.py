"""Where each person stands in each policy's current cycle: the one place that decides a status."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, select, true
from sqlalchemy.orm import Session

from .. import policies, reports
from ..app import Services
from ..models import Confirmation, Cycle, Policy, Request, Setting, Staff

STATUSES = ("confirmed", "pending", "overdue", "exempt")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def status_of(person: Staff, req: Request | None, conf: Confirmation | None,
              moment: dt.datetime) -> str:
    if conf is not None:
        return "confirmed"
    if req is not None and req.exempt_at is not None:
        return "exempt"
    if not person.active:
        return "inactive"
    if req is not None and req.overdue_at is not None and req.overdue_at <= moment:
        return "overdue"
    return "pending"


def setting_id(session: Session) -> int | None:
    return session.scalar(select(Setting.id).order_by(Setting.id).limit(1))


def current_cycle(svc: Services, session: Session, policy: Policy,
                  moment: dt.datetime) -> Cycle | None:
    year = svc.calendar.cycle_year(moment)
    return session.scalars(select(Cycle).filter_by(policy_id=policy.id, year=year)).first()


@dataclass
class Standing:
    """One person in one policy's current cycle."""

    person: Staff
    policy: Policy
    cycle: Cycle | None
    request: Request | None
    confirmation: Confirmation | None
    status: str


@dataclass
class Overview:
    """One policy's current cycle: everyone's standing and the counts."""

    policy: Policy
    year: int
    cycle: Cycle | None
    people: list[Standing] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for s in self.people if s.status == status)

    @property
    def expected(self) -> int:
        """Everyone active who is not exempt: the denominator of 'confirmed X of Y'."""
        return sum(1 for s in self.people if s.status in ("confirmed", "pending", "overdue"))


def overviews(svc: Services, session: Session, moment: dt.datetime,
              include_inactive: bool = False, staff_id: int | None = None) -> list[Overview]:
    """Each policy's current cycle with everyone's standing (or only `staff_id`'s)."""
    year = svc.calendar.cycle_year(moment)
    who = true() if include_inactive else Staff.active
    if staff_id is not None:
        who = and_(who, Staff.id == staff_id)
    out = []
    for policy in policies.configured(session, svc.config):
        cycle = current_cycle(svc, session, policy, moment)
        overview = Overview(policy, year, cycle)
        for person, req, conf in session.execute(reports.people(policy, cycle, who)):
            overview.people.append(Standing(person, policy, cycle, req, conf,
                                            status_of(person, req, conf, moment)))
        out.append(overview)
    return out
