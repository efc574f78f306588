"""Where each person stands in a policy's cycle: the one definition of a status (confirmed, exempt,
no longer applies, declined, inactive, overdue, pending), of a policy's audience and of who a cycle counts,
as SQL. The console, the report, the evidence page, the head teacher's digest and the tick all
select it; none works a status or an audience out for itself."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Iterable

from sqlalchemy import ColumnElement, Select, and_, case, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from .models import Confirmation, Cycle, Policy, PolicyAudience, Request, Staff, StaffGroup

if TYPE_CHECKING:
    from .library import Library

STATUSES = ("confirmed", "exempt", "dropped", "declined", "inactive", "overdue", "pending")
# The statuses a count is made of. Someone inactive (asked, then left without confirming or being
# exempted) is never counted: not "not confirmed" on the evidence page, not in "confirmed X of Y".
COUNTED = ("confirmed", "exempt", "declined", "overdue", "pending")
# The report's contract knows pending, confirmed, exempt and declined: there, overdue and inactive
# people are pending.
REPORTED = {"overdue": "pending", "inactive": "pending", "dropped": "pending"}


# A confirmation that stands: not one a material change superseded (kept for the evidence).
LIVE = Confirmation.superseded_at.is_(None)


def in_audience(policy_id, groups: Iterable[str] | None = None) -> ColumnElement[bool]:
    """The person (Staff, as joined) is in the audience of policy `policy_id` (a value or a
    column): it names no groups (everyone), or one of theirs, ignoring case. With `groups`, the
    audience is those instead of the stored one (a console preview of a change)."""
    if groups is not None:
        wanted = [g.lower() for g in groups]
        if not wanted:
            return true()
        return (select(StaffGroup.id).where(StaffGroup.staff_id == Staff.id,
                                            func.lower(StaffGroup.name).in_(wanted)).exists())
    names = select(PolicyAudience.id).where(PolicyAudience.policy_id == policy_id)
    shared = (select(StaffGroup.id)
              .join(PolicyAudience, func.lower(PolicyAudience.name) == func.lower(StaffGroup.name))
              .where(StaffGroup.staff_id == Staff.id, PolicyAudience.policy_id == policy_id))
    return or_(~names.exists(), shared.exists())


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
                (Request.dropped_at.is_not(None), "dropped"),
                (Request.declined_at.is_not(None), "declined"),
                (not_(Staff.active), "inactive"),
                (overdue_from() <= now, "overdue"),
                else_="pending")


def status_in(now: dt.datetime, *statuses: str) -> ColumnElement[bool]:
    return status(now).in_(statuses)


def counted(current: bool) -> ColumnElement[bool]:
    """Who a cycle's counts are over. While it is the current cycle: the active staff in the
    policy's audience, asked yet or not; leavers count nowhere (the evidence page still shows
    what they did). Once it is past: everyone it asked who confirmed, was exempted or is still
    here, and still had it apply; never someone inactive."""
    if current:
        return and_(Staff.active, in_audience(Policy.id))
    return and_(Request.id.is_not(None), Request.dropped_at.is_(None),
                or_(Staff.active, Confirmation.id.is_not(None), Request.exempt_at.is_not(None)))


def listed(current: bool) -> ColumnElement[bool]:
    """Who a cycle's evidence lists: everyone it counts and everyone it asked."""
    return or_(counted(current), Request.id.is_not(None))


def concerned() -> ColumnElement[bool]:
    """Everyone a policy's cycle is about, counted or not: those in its audience (the inactive
    too) and anyone it asked."""
    return or_(in_audience(Policy.id), Request.id.is_not(None))


def is_current(lib: Library, cycle: Cycle, now: dt.datetime) -> bool:
    entry = lib.get(cycle.policy_id)
    return entry is not None and cycle.year == entry.cycle_year(now)


def people(lib: Library, now: dt.datetime, cycle: Cycle | None = None,
           who: ColumnElement[bool] | None = None) -> Select:
    """One row per person per policy in its current cycle (or in `cycle` only): Staff, Request,
    Confirmation (either may be None), status, counted and overdue_from, for the staff who match
    `who` (default: those the cycle counts). Policy and Cycle are joined, for callers to filter
    on or select. Each policy's current cycle is its own: each opens on its own day."""
    current = cycle is None or is_current(lib, cycle, now)
    is_counted = counted(current)
    if cycle is None:
        years = lib.years(now)
        same_year = Cycle.year == case(years, value=Policy.id, else_=-1) if years else False
        policies = Policy.id.in_(list(years))
    else:
        same_year, policies = Cycle.year == cycle.year, Policy.id == cycle.policy_id
    return (select(Staff, Request, Confirmation, status(now).label("status"),
                   is_counted.label("counted"), overdue_from().label("overdue_from"))
            .select_from(Policy)
            .join(Staff, Staff.setting_id == Policy.setting_id)
            .outerjoin(Cycle, and_(Cycle.policy_id == Policy.id, same_year))
            .outerjoin(Request, and_(Request.cycle_id == Cycle.id, Request.staff_id == Staff.id))
            .outerjoin(Confirmation, (Confirmation.request_id == Request.id) & LIVE)
            .where(policies, is_counted if who is None else who)
            .order_by(func.lower(Staff.name), Staff.email))


def open_requests(lib: Library, now: dt.datetime) -> Select:
    """The requests of each policy's current cycle still to confirm (pending or overdue: open,
    and the person counted), from the request side: the same people as `people` filtered to
    those statuses, for a query that wants only their dates (the digest's next day), which the
    database then reads from an index instead of every person in every policy."""
    years = lib.years(now)
    if not years:
        return select(Request.id).where(false())
    return (select(Request.id).join(Cycle, Cycle.id == Request.cycle_id)
            .join(Staff, Staff.id == Request.staff_id)
            .where(Cycle.policy_id.in_(list(years)),
                   Cycle.year == case(years, value=Cycle.policy_id, else_=-1),
                   Request.closed_at.is_(None),  # not confirmed, exempt or dropped
                   Staff.active, in_audience(Cycle.policy_id)))  # counted(True), by the cycle


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
    declined: int = 0  # said they cannot confirm, not yet resolved
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
        return self.confirmed + self.outstanding

    @property
    def outstanding(self) -> int:
        """Not confirmed and not exempt: the "not confirmed" of the evidence page."""
        return self.declined + self.overdue + self.pending


def tally(found: Iterable[Standing]) -> Tally:
    return Tally.of(s.status for s in found if s.counted)


def tallies(lib: Library, session: Session, now: dt.datetime) -> dict[int, Tally]:
    """Each policy's current cycle, by policy id: the counts alone."""
    return _counted(lib, session, now, ())[0]


# A person's state in a cycle, as the timeline plans it (timeline._state reads it in this order).
STATE = (Staff.start_date, Request.stage_sent, Request.reminded_at, Request.last_message_at,
         Request.due_extended_to, Request.named_due)


def tallies_and_states(lib: Library, session: Session, now: dt.datetime
                       ) -> tuple[dict[int, Tally], dict[int, list[tuple[tuple, int]]]]:
    """The counts of `tallies`, and, in the same pass, each policy's people still to confirm
    grouped by their state (STATE) with how many are in each: what the timeline plans from."""
    return _counted(lib, session, now, STATE)


def _counted(lib: Library, session: Session, now: dt.datetime, state: tuple
             ) -> tuple[dict[int, Tally], dict[int, list[tuple[tuple, int]]]]:
    each = (people(lib, now).with_only_columns(Policy.id.label("policy_id"),
                                               status(now).label("status"),
                                               *(c.label(f"s_{i}") for i, c in enumerate(state)))
            .order_by(None).subquery())
    rows = session.execute(select(*each.c, func.count()).group_by(*each.c))
    found: dict[int, Counter] = {}
    states: dict[int, list[tuple[tuple, int]]] = {}
    for policy_id, status_, *key, n in rows:
        found.setdefault(policy_id, Counter())[status_] += n
        if state and status_ in ("pending", "overdue"):
            states.setdefault(policy_id, []).append((tuple(key), n))
    return ({policy_id: Tally(**{s: c[s] for s in COUNTED}) for policy_id, c in found.items()},
            states)


def current_cycle(lib: Library, session: Session, policy: Policy,
                  now: dt.datetime) -> Cycle | None:
    entry = lib.get(policy.id)
    if entry is None:
        return None
    return session.scalars(select(Cycle).filter_by(policy_id=policy.id,
                                                   year=entry.cycle_year(now))).first()


@dataclass
class Overview:
    """One policy's current cycle: everyone's standing and the counts (or the counts alone)."""

    policy: Policy
    year: int
    cycle: Cycle | None
    people: list[Standing] = field(default_factory=list)
    counts: Tally | None = None  # counted in the database, when the people are not wanted

    @cached_property
    def tally(self) -> Tally:
        return self.counts if self.counts is not None else tally(self.people)

    def count(self, status_: str) -> int:
        return self.tally.count(status_)

    @property
    def expected(self) -> int:
        return self.tally.expected


def in_use(lib: Library, session: Session) -> list[Policy]:
    """The policies in use (active and paused), in the console's order."""
    found = {p.id: p for p in session.scalars(select(Policy).where(
        Policy.id.in_([e.id for e in lib.policies])))}
    return [found[e.id] for e in lib.policies if e.id in found]


def overviews(lib: Library, session: Session, now: dt.datetime, include_inactive: bool = False,
              staff_id: int | None = None) -> list[Overview]:
    """Each policy's current cycle with everyone's standing (or only `staff_id`'s); the inactive
    and those it asked who have left its audience too if asked for, though they count in no
    tally."""
    who = concerned() if include_inactive else None
    out = []
    for policy in in_use(lib, session):
        query = people(lib, now, who=who).where(Policy.id == policy.id)
        if staff_id is not None:
            query = query.where(Staff.id == staff_id)
        cycle = current_cycle(lib, session, policy, now)
        out.append(Overview(policy, lib.get(policy.id).cycle_year(now), cycle,
                            standings(session, policy, cycle, query)))
    return out


def counted_overviews(lib: Library, session: Session, now: dt.datetime,
                      found: dict[int, Tally] | None = None) -> list[Overview]:
    """Each policy's current cycle with its counts alone, counted in the database (the
    dashboard: at 50,000 staff nobody's standing need be read), or given as `found`."""
    found = tallies(lib, session, now) if found is None else found
    return [Overview(policy, lib.get(policy.id).cycle_year(now),
                     current_cycle(lib, session, policy, now),
                     counts=found.get(policy.id, Tally()))
            for policy in in_use(lib, session)]


def of_cycle(lib: Library, session: Session, cycle: Cycle, now: dt.datetime) -> list[Standing]:
    """Everyone a cycle's evidence lists (see `listed`), with their standing."""
    return standings(session, cycle.policy, cycle,
                     people(lib, now, cycle, listed(is_current(lib, cycle, now))))
