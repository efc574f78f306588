"""Where each person stands in a policy's cycle: the one definition of a status (confirmed, exempt,
inactive, overdue, pending) and of who a cycle counts, as SQL. The console, the report, the evidence
page and the head teacher's digest all select it; none works a status out for itself."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable

from sqlalchemy import ColumnElement, Select, and_, case, func, not_, or_, select, true
from sqlalchemy.orm import Session

from . import policies
from .models import Confirmation, Cycle, Policy, Request, Staff
from .services import Services

STATUSES = ("confirmed", "exempt", "inactive", "overdue", "pending")
# The statuses a count is made of. Someone inactive (asked, then left without confirming or being
# exempted) is never counted: not "not confirmed" on the evidence page, not in "confirmed X of Y".
COUNTED = ("confirmed", "exempt", "overdue", "pending")
# The report's contract knows pending, confirmed and exempt only: there, overdue and inactive
# people are pending.
REPORTED = {"overdue": "pending", "inactive": "pending"}


def overdue_from() -> ColumnElement[dt.datetime]:
    """When an open request becomes overdue: the start of the day after the date its reminders
    asked for (`planner.overdue_at`, stored when the first reminder has had its outcome, and
    again when an admin extends the date). NULL: its clock has not started."""
    return Request.overdue_at


def status(now: dt.datetime) -> ColumnElement[str]:
    """A person's status at `now`, over the rows `people` joins (no Request: not asked yet). The
    first match wins, so what someone did (confirmed, was exempted) outlasts their leaving."""
    return case((Confirmation.id.is_not(None), "confirmed"),
                (Request.exempt_at.is_not(None), "exempt"),
                (not_(Staff.active), "inactive"),
                (overdue_from() <= now, "overdue"),
                else_="pending")


def status_in(now: dt.datetime, *statuses: str) -> ColumnElement[bool]:
    return status(now).in_(statuses)


def counted(svc: Services, year: int, now: dt.datetime) -> ColumnElement[bool]:
    """Who a cycle's counts are over. While it is the current cycle: the active staff, asked yet or
    not; leavers count nowhere (the evidence page still shows what they did). Once it is past:
    everyone it asked who confirmed, was exempted or is still here; never someone inactive."""
    if year == svc.calendar.cycle_year(now):
        return Staff.active
    return and_(Request.id.is_not(None),
                or_(Staff.active, Confirmation.id.is_not(None), Request.exempt_at.is_not(None)))


def listed(svc: Services, year: int, now: dt.datetime) -> ColumnElement[bool]:
    """Who a cycle's evidence lists: everyone it counts and everyone it asked."""
    return or_(counted(svc, year, now), Request.id.is_not(None))


def people(svc: Services, now: dt.datetime, year: int | None = None,
           who: ColumnElement[bool] | None = None) -> Select:
    """One row per person per configured policy in `year`'s cycle (default: the current one):
    Staff, Request, Confirmation (either may be None), status, counted and overdue_from, for the
    staff who match `who` (default: those the cycle counts). Policy and Cycle are joined, for
    callers to filter on or select."""
    year = svc.calendar.cycle_year(now) if year is None else year
    is_counted = counted(svc, year, now)
    return (select(Staff, Request, Confirmation, status(now).label("status"),
                   is_counted.label("counted"), overdue_from().label("overdue_from"))
            .select_from(Policy)
            .join(Staff, Staff.setting_id == Policy.setting_id)
            .outerjoin(Cycle, and_(Cycle.policy_id == Policy.id, Cycle.year == year))
            .outerjoin(Request, and_(Request.cycle_id == Cycle.id, Request.staff_id == Staff.id))
            .outerjoin(Confirmation, Confirmation.request_id == Request.id)
            .where(Policy.slug.in_([p.slug for p in svc.config.policies]),
                   is_counted if who is None else who)
            .order_by(func.lower(Staff.name), Staff.email))


@dataclass(frozen=True)
class Standing:
    """One person in one policy's cycle."""

    person: Staff
    policy: Policy
    cycle: Cycle | None
    request: Request | None
    confirmation: Confirmation | None
    status: str
    counted: bool
    overdue_from: dt.datetime | None


def standings(session: Session, policy: Policy, cycle: Cycle | None,
              query: Select) -> list[Standing]:
    """The standings `query` (a `people` select, filtered to `policy`) finds."""
    return [Standing(staff, policy, cycle, req, conf, status_, bool(is_counted), due)
            for staff, req, conf, status_, is_counted, due in session.execute(query)]


@dataclass(frozen=True)
class Tally:
    """How many of the people a cycle counts are in each status."""

    confirmed: int = 0
    exempt: int = 0
    overdue: int = 0
    pending: int = 0

    @classmethod
    def of(cls, statuses: Iterable[str]) -> Tally:
        found = Counter(statuses)
        return cls(**{s: found[s] for s in COUNTED})

    def count(self, status_: str) -> int:
        return getattr(self, status_)

    @property
    def expected(self) -> int:
        """Everyone active who is not exempt: the Y of 'confirmed X of Y'."""
        return self.confirmed + self.overdue + self.pending

    @property
    def outstanding(self) -> int:
        """Not confirmed and not exempt: the "not confirmed" of the evidence page."""
        return self.overdue + self.pending


def tally(found: Iterable[Standing]) -> Tally:
    return Tally.of(s.status for s in found if s.counted)


def tallies(svc: Services, session: Session, now: dt.datetime) -> dict[int, Tally]:
    """Each configured policy's current cycle, by policy id: the counts alone."""
    rows = session.execute(people(svc, now).with_only_columns(Policy.id, status(now))
                           .order_by(None))
    by_policy: dict[int, list[str]] = {}
    for policy_id, status_ in rows:
        by_policy.setdefault(policy_id, []).append(status_)
    return {policy_id: Tally.of(found) for policy_id, found in by_policy.items()}


def current_cycle(svc: Services, session: Session, policy: Policy,
                  now: dt.datetime) -> Cycle | None:
    year = svc.calendar.cycle_year(now)
    return session.scalars(select(Cycle).filter_by(policy_id=policy.id, year=year)).first()


@dataclass
class Overview:
    """One policy's current cycle: everyone's standing and the counts."""

    policy: Policy
    year: int
    cycle: Cycle | None
    people: list[Standing] = field(default_factory=list)

    @cached_property
    def tally(self) -> Tally:
        return tally(self.people)

    def count(self, status_: str) -> int:
        return self.tally.count(status_)

    @property
    def expected(self) -> int:
        return self.tally.expected


def overviews(svc: Services, session: Session, now: dt.datetime, include_inactive: bool = False,
              staff_id: int | None = None) -> list[Overview]:
    """Each configured policy's current cycle with everyone's standing (or only `staff_id`'s);
    the inactive too if asked for, though they count in no tally."""
    who = true() if include_inactive else None
    out = []
    for policy in policies.configured(session, svc.config):
        query = people(svc, now, who=who).where(Policy.id == policy.id)
        if staff_id is not None:
            query = query.where(Staff.id == staff_id)
        cycle = current_cycle(svc, session, policy, now)
        out.append(Overview(policy, svc.calendar.cycle_year(now), cycle,
                            standings(session, policy, cycle, query)))
    return out


def of_cycle(svc: Services, session: Session, cycle: Cycle, now: dt.datetime) -> list[Standing]:
    """Everyone a cycle's evidence lists (see `listed`), with their standing."""
    return standings(session, cycle.policy, cycle,
                     people(svc, now, cycle.year, listed(svc, cycle.year, now))
                     .where(Policy.id == cycle.policy_id))
