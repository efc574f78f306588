"""Evidence for an inspector: each cycle's CSV export (the report's columns plus the confirmation
evidence) and a print-friendly page with the policy version, every confirmation and exemption."""

from __future__ import annotations

from flask import Response, abort, render_template
from sqlalchemy import select

from .. import policies, reports
from ..app import services
from ..models import Confirmation, Cycle, Event, Policy, Request, Staff
from . import bp


@bp.route("/evidence")
def evidence():
    svc = services()
    with svc.db.read() as session:
        slugs = [p.slug for p in svc.config.policies]
        cycles = list(session.scalars(select(Cycle).join(Policy).where(Policy.slug.in_(slugs))
                                      .order_by(Cycle.year.desc(), Policy.title)))
        for cycle in cycles:
            _ = cycle.policy
    return render_template("admin/evidence_list.html", active="evidence", cycles=cycles)


def _cycle(session, cycle_id: int) -> Cycle:
    cycle = session.get(Cycle, cycle_id)
    if cycle is None:
        abort(404)
    _ = cycle.policy
    return cycle


@bp.route("/evidence/<int:cycle_id>")
def evidence_page(cycle_id: int):
    svc = services()
    with svc.db.read() as session:
        cycle = _cycle(session, cycle_id)
        entries = session.execute(
            select(Staff, Request, Confirmation).join(Request, Request.staff_id == Staff.id)
            .outerjoin(Confirmation, Confirmation.request_id == Request.id)
            .where(Request.cycle_id == cycle.id).order_by(Staff.name, Staff.email)).all()
        # Who exempted each person, from the append-only log.
        exempted_by = {e.request_id: e.actor for e in session.scalars(
            select(Event).where(Event.kind == "exempted",
                                Event.request_id.in_([r.id for _, r, _ in entries])))}
        versions = {}
        for _, _, conf in entries:
            if conf is not None:
                versions.setdefault(conf.version_sha256, conf.policy_version)
        current = policies.current_version(session, cycle.policy_id)
    confirmed = [(s, r, c) for s, r, c in entries if c is not None]
    exempt = [(s, r) for s, r, c in entries if c is None and r.exempt_at is not None]
    outstanding = [(s, r) for s, r, c in entries if c is None and r.exempt_at is None]
    return render_template("admin/evidence.html", active="evidence", cycle=cycle,
                           confirmed=confirmed, exempt=exempt, outstanding=outstanding,
                           exempted_by=exempted_by, versions=versions, current=current,
                           tz=svc.calendar.tz, setting=svc.config.setting)


@bp.route("/evidence/<int:cycle_id>/export.csv")
def export(cycle_id: int):
    svc = services()
    with svc.db.read() as session:
        cycle = _cycle(session, cycle_id)
        # reports.rows reports the cycle of the moment it is given: the cycle's own opening.
        rows = [r for r in reports.rows(svc, session, cycle.opens_at)
                if r.policy == cycle.policy.slug]
    filename = f"signoff-{cycle.policy.slug}-{cycle.year}.csv"
    return Response(reports.to_csv(iter(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
