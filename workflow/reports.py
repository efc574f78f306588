"""Report rows, as CSV or text: `signoff report` (one row per active person per policy for the
current cycle) and each cycle's evidence export (everyone that cycle asked)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, fields
from typing import Iterator

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from . import delivery, policies
from .app import Services
from .models import Confirmation, Cycle, Policy, PolicyVersion, Request, Staff

COLUMNS = ("name", "email", "policy", "version", "status", "first_sent_at", "reminders_sent",
           "last_sent_at", "escalated", "confirmed_at", "delivery")


@dataclass(frozen=True)
class Row:
    name: str
    email: str
    policy: str
    version: str
    status: str
    first_sent_at: str
    reminders_sent: int
    last_sent_at: str
    escalated: str
    confirmed_at: str
    delivery: str
    method: str = ""  # evidence columns, after the contract's
    ip_address: str = ""
    user_agent: str = ""
    exempt_reason: str = ""


def rows(svc: Services, session: Session, now: dt.datetime) -> Iterator[Row]:
    """`signoff report`: each policy's current cycle, one row per active staff member, asked yet or
    not. A pending person's version is the text their link shows today."""
    year = svc.calendar.cycle_year(now)
    for policy in policies.configured(session, svc.config):
        cycle = session.scalars(select(Cycle).filter_by(policy_id=policy.id, year=year)).first()
        yield from _rows(svc, session, policy, cycle, Staff.active,
                         policies.current_version(session, policy.id))


def cycle_rows(svc: Services, session: Session, cycle: Cycle, now: dt.datetime) -> Iterator[Row]:
    """The evidence export of one cycle: the same people as `cycle_people`. A pending person's
    version is the text the cycle asked about (`cycle_version`), not whatever is current today."""
    yield from _rows(svc, session, cycle.policy, cycle, _in_cycle(svc, cycle, now),
                     cycle_version(session, cycle))


def cycle_people(svc: Services, session: Session, cycle: Cycle,
                 now: dt.datetime) -> list[tuple[Staff, Request | None, Confirmation | None]]:
    """Everyone a cycle asked (a request in it), whether or not they are still on the roster or
    active, plus, while it is the current cycle, the active staff it has not asked yet."""
    return list(session.execute(people(cycle.policy, cycle, _in_cycle(svc, cycle, now))))


def cycle_version(session: Session, cycle: Cycle) -> PolicyVersion | None:
    """The policy text a cycle asked about: the latest version loaded by the time it opened (its
    nominal opening, or later when a first deployment opened it mid-year). Should none be that old
    (a cycle opened by a back-dated `tick --at`), the first text loaded after it."""
    opened = max(cycle.opens_at, cycle.created_at)
    of_policy = select(PolicyVersion).where(PolicyVersion.policy_id == cycle.policy_id)
    before = (of_policy.where(PolicyVersion.created_at <= opened)
              .order_by(PolicyVersion.created_at.desc(), PolicyVersion.id.desc()))
    after = of_policy.order_by(PolicyVersion.created_at, PolicyVersion.id)
    return session.scalars(before.limit(1)).first() or session.scalars(after.limit(1)).first()


def _in_cycle(svc: Services, cycle: Cycle, now: dt.datetime) -> ColumnElement[bool]:
    if svc.calendar.cycle_year(now) == cycle.year:
        return or_(Request.id.is_not(None), Staff.active)
    return Request.id.is_not(None)


def people(policy: Policy, cycle: Cycle | None, who: ColumnElement[bool]) -> Select:
    """Staff who match `who`, with their request and confirmation in `cycle` (None: not open)."""
    cycle_id = cycle.id if cycle else -1
    return (select(Staff, Request, Confirmation)
            .outerjoin(Request, and_(Request.staff_id == Staff.id, Request.cycle_id == cycle_id))
            .outerjoin(Confirmation, Confirmation.request_id == Request.id)
            .where(Staff.setting_id == policy.setting_id, who)
            .order_by(func.lower(Staff.name), Staff.email))


def _rows(svc: Services, session: Session, policy: Policy, cycle: Cycle | None,
          who: ColumnElement[bool], pending_version: PolicyVersion | None) -> Iterator[Row]:
    tz = svc.calendar.tz

    def iso(moment: dt.datetime | None) -> str:
        return moment.astimezone(tz).isoformat(timespec="seconds") if moment else ""

    sent, latest = delivery.sends(), delivery.latest()
    query = (people(policy, cycle, who)
             .add_columns(sent.c.first, sent.c.last, sent.c.n, latest.c.status,
                          latest.c.last_error)
             .outerjoin(sent, sent.c.request_id == Request.id)
             .outerjoin(latest, latest.c.request_id == Request.id))
    for staff, req, conf, first, last, count, last_status, last_error in session.execute(query):
        if conf is not None:
            status = "confirmed"
        elif req is not None and req.exempt_at is not None:
            status = "exempt"
        else:
            status = "pending"
        yield Row(
            name=staff.name, email=staff.email, policy=policy.slug,
            version=(conf.version_sha256 if conf
                     else pending_version.sha256 if pending_version else ""),
            status=status, first_sent_at=iso(first), reminders_sent=count or 0,
            last_sent_at=iso(last),
            escalated="yes" if req is not None and req.escalated_at else "no",
            confirmed_at=iso(conf.confirmed_at) if conf else "",
            delivery=delivery.problem(last_status, last_error) or "ok",
            method=conf.method if conf else "", ip_address=(conf.ip_address or "") if conf else "",
            user_agent=(conf.user_agent or "") if conf else "",
            exempt_reason=(req.exempt_reason or "") if req is not None else "")


def to_csv(report: Iterator[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.name for f in fields(Row)])
    for row in report:
        writer.writerow([_cell(getattr(row, f.name)) for f in fields(Row)])
    return out.getvalue()


def _cell(value) -> str:
    """Neutralise spreadsheet formulas: a name like `=HYPERLINK(…)` must stay text in Excel."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_text(report: Iterator[Row]) -> str:
    table = [("NAME", "EMAIL", "POLICY", "STATUS", "REMINDERS", "CONFIRMED", "DELIVERY")]
    totals: dict[str, list[int]] = {}
    for r in report:
        table.append((r.name, r.email, r.policy, r.status, str(r.reminders_sent),
                      r.confirmed_at[:16].replace("T", " "), r.delivery))
        t = totals.setdefault(r.policy, [0, 0, 0])
        t[0] += r.status == "confirmed"
        t[1] += r.status != "exempt"
        t[2] += r.status == "exempt"
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.append("")
    for policy, (confirmed, total, exempt) in totals.items():
        lines.append(f"{policy}: confirmed {confirmed} of {total}"
                     + (f" ({exempt} exempt)" if exempt else ""))
    if not totals:
        lines.append("no active staff: import a roster with `signoff staff import FILE.csv`")
    return "\n".join(lines) + "\n"
