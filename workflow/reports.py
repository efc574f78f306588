"""Report rows, as CSV or text: `signoff report` (one row per active person per policy for the
current cycle) and each cycle's evidence export (everyone that cycle asked)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from . import library, requests, sends, standing
from .calendar import Calendar
from .services import Services
from .models import Confirmation, Cycle, Decline, Policy, PolicyVersion, Request

COLUMNS = ("name", "email", "policy", "version", "status", "first_sent_at", "reminders_sent",
           "last_sent_at", "escalated", "confirmed_at", "delivery", "confirm_by")
# The evidence of each confirmation and exemption, after the contract's columns: how (self or
# paper), the browser's address and agent, an exemption's reason, and for a paper sign-off who
# recorded it, the date on the form, where it is kept and the office's note; then the person's
# latest "I can't confirm this", if any: when, which statement ("" for the whole policy), why,
# and how it was resolved (reopened, excused, confirmed; "" while waiting) with the note; then
# their latest confirmation that a material change superseded (they were asked again), if any;
# last, the approvals of the row's version, in words.
EVIDENCE = ("method", "ip_address", "user_agent", "exempt_reason", "recorded_by", "signed_on",
            "paper_kept", "note", "declined_at", "decline_statement", "decline_reason",
            "decline_outcome", "decline_resolution", "earlier_confirmed_at", "earlier_version",
            "version_approved")


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
    confirm_by: str = ""  # the date their latest reminder named, or their first will name
    method: str = ""  # EVIDENCE, after the contract's columns
    ip_address: str = ""
    user_agent: str = ""
    exempt_reason: str = ""
    recorded_by: str = ""
    signed_on: str = ""
    paper_kept: str = ""
    note: str = ""
    declined_at: str = ""
    decline_statement: str = ""
    decline_reason: str = ""
    decline_outcome: str = ""
    decline_resolution: str = ""
    earlier_confirmed_at: str = ""
    earlier_version: str = ""
    version_approved: str = ""
    standing: str = ""  # the console's status (overdue, inactive…), for the counts; not a column


def rows(svc: Services, session: Session, now: dt.datetime) -> Iterator[Row]:
    """`signoff report`: each policy's current cycle, one row per active staff member, asked yet or
    not. A pending person's version is the text their link shows today."""
    lib = svc.library(session)
    for policy in standing.in_use(lib, session):
        entry = lib.get(policy.id)
        cycle = standing.current_cycle(lib, session, policy, now)
        opens = cycle.opens_at if cycle else entry.calendar.cycle_opens(entry.cycle_year(now))
        yield from _rows(svc, session, now, policy,
                         standing.people(lib, now).where(Policy.id == policy.id),
                         library.current_version(session, policy.id), entry.calendar, opens)


def cycle_rows(svc: Services, session: Session, cycle: Cycle, now: dt.datetime) -> Iterator[Row]:
    """The evidence export of one cycle: the same people as its evidence page
    (`standing.of_cycle`). A pending person's version is the text the cycle asked about
    (`cycle_version`), not whatever is current today."""
    lib = svc.library(session)
    query = standing.people(lib, now, cycle, standing.listed(standing.is_current(lib, cycle, now)))
    entry = lib.get(cycle.policy_id)
    yield from _rows(svc, session, now, cycle.policy, query, cycle_version(session, cycle),
                     entry.calendar if entry is not None else lib.calendar, cycle.opens_at)


def cycle_version(session: Session, cycle: Cycle) -> PolicyVersion | None:
    """The policy text a cycle asked about: the latest version in force by the time it opened
    (its nominal opening, or later when a first deployment opened it mid-year). Should none be
    that old (a cycle opened by a back-dated `tick --at`), the first in force after it."""
    opened = max(cycle.opens_at, cycle.created_at)
    of_policy = select(PolicyVersion).where(PolicyVersion.policy_id == cycle.policy_id,
                                            library.IN_FORCE)
    before = (of_policy.where(PolicyVersion.in_force_at <= opened)
              .order_by(PolicyVersion.in_force_at.desc(), PolicyVersion.id.desc()))
    after = of_policy.order_by(PolicyVersion.in_force_at, PolicyVersion.id)
    return session.scalars(before.limit(1)).first() or session.scalars(after.limit(1)).first()


def _rows(svc: Services, session: Session, now: dt.datetime, policy: Policy, query: Select,
          pending_version: PolicyVersion | None, cal: Calendar,
          opens: dt.datetime) -> Iterator[Row]:
    """One row per person that `query` (a `standing.people` select of `policy`) finds, with
    what had been sent to them by `now`."""
    tz = svc.tz

    def iso(moment: dt.datetime | None) -> str:
        return moment.astimezone(tz).isoformat(timespec="seconds") if moment else ""

    sent, latest = sends.counts(now), sends.latest(now)
    newest = (select(Decline.request_id, func.max(Decline.id).label("id"))
              .group_by(Decline.request_id).subquery())
    decline = aliased(Decline)
    superseded = (select(Confirmation.request_id, func.max(Confirmation.id).label("id"))
                  .where(Confirmation.superseded_at.is_not(None))
                  .group_by(Confirmation.request_id).subquery())
    earlier = aliased(Confirmation)
    query = (query.add_columns(sent.c.first, sent.c.last, sent.c.n, latest.c.status,
                               latest.c.last_error, decline, earlier)
             .outerjoin(sent, sent.c.request_id == Request.id)
             .outerjoin(latest, latest.c.request_id == Request.id)
             .outerjoin(newest, newest.c.request_id == Request.id)
             .outerjoin(decline, decline.id == newest.c.id)
             .outerjoin(superseded, superseded.c.request_id == Request.id)
             .outerjoin(earlier, earlier.id == superseded.c.id))
    approved = {v.sha256: library.approved_line(v.approvals) or "" for v in session.scalars(
        select(PolicyVersion).where(PolicyVersion.policy_id == policy.id))}
    # yield_per: rows are made as they are read, not all first (a 50,000-row CSV streams).
    for (staff, req, conf, status, _, _, first, last, count, last_status,
         last_error, dec, old) in session.execute(query.execution_options(yield_per=500)):
        version = (conf.version_sha256 if conf
                   else pending_version.sha256 if pending_version else "")
        yield Row(
            name=staff.name, email=staff.email, policy=policy.slug, version=version,
            status=standing.REPORTED.get(status, status), first_sent_at=iso(first),
            reminders_sent=count or 0, last_sent_at=iso(last),
            escalated="yes" if req is not None and req.escalated_at else "no",
            confirmed_at=iso(conf.confirmed_at) if conf else "",
            delivery=sends.problem(last_status, last_error) or "ok",
            confirm_by=_day(requests.confirm_by_of(req, staff.start_date, cal, opens, now)),
            method=conf.method if conf else "", ip_address=(conf.ip_address or "") if conf else "",
            user_agent=(conf.user_agent or "") if conf else "",
            exempt_reason=(req.exempt_reason or "") if req is not None else "",
            recorded_by=(conf.recorded_by or "") if conf else "",
            signed_on=conf.signed_on.isoformat() if conf and conf.signed_on else "",
            paper_kept=(conf.paper_kept or "") if conf else "",
            note=((conf.reason or "") if conf else
                  "no longer applies to them" if status == "dropped" else ""),
            declined_at=iso(dec.declined_at) if dec else "",
            decline_statement=(dec.statement or "") if dec else "",
            decline_reason=dec.reason if dec else "",
            decline_outcome=(dec.outcome or "") if dec else "",
            decline_resolution=(dec.resolution or "") if dec else "",
            earlier_confirmed_at=iso(old.confirmed_at) if old else "",
            earlier_version=old.version_sha256 if old else "",
            version_approved=approved.get(version, ""),
            standing=status)


def _day(day: dt.date | None) -> str:
    return day.isoformat() if day is not None else ""


def to_csv(report: Iterator[Row]) -> str:
    return "".join(csv_chunks(report))


def csv_chunks(report: Iterator[Row], rows_per_chunk: int = 500) -> Iterator[str]:
    """The report as CSV, a few hundred rows at a time: a download of 50,000 rows streams."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + EVIDENCE)
    for i, row in enumerate(report, 1):
        writer.writerow([_cell(getattr(row, name)) for name in COLUMNS + EVIDENCE])
        if i % rows_per_chunk == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _cell(value) -> str:
    """Neutralise spreadsheet formulas: a name like `=HYPERLINK(…)` must stay text in Excel."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_text(report: Iterator[Row]) -> str:
    table = [("NAME", "EMAIL", "POLICY", "STATUS", "REMINDERS", "CONFIRMED", "DELIVERY")]
    statuses: dict[str, list[str]] = {}
    for r in report:
        table.append((r.name, r.email, r.policy, r.status, str(r.reminders_sent),
                      r.confirmed_at[:16].replace("T", " "), r.delivery))
        statuses.setdefault(r.policy, []).append(r.standing)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.append("")
    for policy, found in statuses.items():
        t = standing.Tally.of(found)
        lines.append(f"{policy}: confirmed {t.confirmed} of {t.expected}"
                     + (f" ({t.exempt} exempt)" if t.exempt else ""))
    if not statuses:
        lines.append("no active staff: import a roster with `signoff staff import FILE.csv`")
    return "\n".join(lines) + "\n"
