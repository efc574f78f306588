"""Evidence for an inspector: each cycle's CSV export (the report's columns plus the confirmation
evidence: method, recorded by, date signed, where the paper is kept, note) and a print-friendly
page with the policy version, every confirmation and exemption."""

from __future__ import annotations

from flask import Response, abort, render_template
from sqlalchemy import select

from .. import policies, reports, standing
from ..services import services
from ..models import Cycle, Event, Policy
from . import bp, now


@bp.route("/evidence")
def evidence():
    svc = services()
    with svc.db.read() as session:
        # Every policy's cycles, retired ones too: their evidence is kept.
        cycles = list(session.scalars(select(Cycle).join(Policy)
                                      .where(Policy.setting_id == policies.setting_id(session))
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


@bp.route("/evidence/<id:cycle_id>")
def evidence_page(cycle_id: int):
    svc = services()
    with svc.db.read() as session:
        cycle = _cycle(session, cycle_id)
        entries = standing.of_cycle(svc.library(session), session, cycle, now())
        # Who exempted each person, from the append-only log.
        exempted_by = {e.request_id: e.actor for e in session.scalars(
            select(Event).where(Event.kind == "exempted",
                                Event.request_id.in_([s.request.id for s in entries
                                                      if s.request])))}
        versions = {}
        for s in entries:
            if s.confirmation is not None:
                versions.setdefault(s.confirmation.version_sha256, s.confirmation.policy_version)
        asked = reports.cycle_version(session, cycle)
    done = ("confirmed", "exempt")
    # "Not confirmed" is the people the counts are over (`standing.counted`), as on the dashboard;
    # someone asked who left without confirming is listed apart and counted nowhere.
    return render_template("admin/evidence.html", active="evidence", cycle=cycle,
                           confirmed=[s for s in entries if s.status == "confirmed"],
                           exempt=[s for s in entries if s.status == "exempt"],
                           outstanding=[s for s in entries
                                        if s.counted and s.status not in done],
                           gone=[s for s in entries if not s.counted
                                 and s.status not in (*done, "dropped")],
                           dropped=[s for s in entries if s.status == "dropped"],
                           tally=standing.tally(entries),
                           left=sum(1 for s in entries if not s.counted
                                    and not s.person.active),
                           exempted_by=exempted_by, versions=versions, asked=asked,
                           tz=svc.tz, setting=svc.config.setting)


@bp.route("/evidence/<id:cycle_id>/export.csv")
def export(cycle_id: int):
    svc = services()
    with svc.db.read() as session:
        cycle = _cycle(session, cycle_id)
        rows = list(reports.cycle_rows(svc, session, cycle, now()))
    filename = f"signoff-{cycle.policy.slug}-{cycle.year}.csv"
    return Response(reports.to_csv(iter(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
