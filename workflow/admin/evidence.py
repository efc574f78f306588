"""Evidence for an inspector: each cycle's page (its people 200 a page), the same evidence with
everyone on one page laid out for paper and as a PDF, and its CSV export (the report's columns
plus the confirmation evidence: method, recorded by, date signed, where the paper is kept,
note)."""

from __future__ import annotations

import logging
from collections import Counter

from flask import (Response, abort, flash, redirect, render_template, stream_with_context,
                   url_for)
from flask_login import current_user
from sqlalchemy import case, func, select

from .. import library, pdf, policies, reports, standing
from ..services import services
from ..models import Confirmation, Cycle, Decline, Event, Policy, PolicyVersion, Request, Staff
from . import bp, now, paging

log = logging.getLogger("signoff.admin")


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
    if cycle is None or cycle.policy.setting_id != policies.setting_id(session):
        abort(404)
    _ = cycle.policy
    return cycle


# The evidence page's sections, in order; a person is in one.
SECTIONS = ("confirmed", "exempt", "declined", "outstanding", "gone", "dropped")
# A PDF is made in the request: WeasyPrint took 11 s and 310 MB for 5,000 people, 3 minutes and
# 1.9 GB for 50,000. Above this the browser's Print makes it instead.
PDF_MAX = 5_000
PER_PAGE = 200  # people a page: a cycle of 50,000 is listed a page at a time, the CSV has all


def _section(current: bool, moment):
    """Which of SECTIONS a `standing.people` row is in, as a SQL expression. "Not confirmed" is
    the people the counts are over (`standing.counted`), as on the dashboard; someone asked who
    left without confirming is listed apart and counted nowhere."""
    status_ = standing.status(moment)
    return case((status_ == "confirmed", 0), (status_ == "exempt", 1),
                (status_ == "declined", 2), (status_ == "dropped", 5),
                (standing.counted(current), 3), else_=4)


@bp.route("/evidence/<id:cycle_id>")
def evidence_page(cycle_id: int):
    svc = services()
    with svc.db.read() as session:
        shown = _evidence(svc, session, _cycle(session, cycle_id), now(), paged=True)
    return render_template("admin/evidence.html", active="evidence", pdf_max=PDF_MAX, **shown)


@bp.route("/evidence/<id:cycle_id>/print")
def evidence_print(cycle_id: int):
    """Everyone the cycle lists on one page, laid out for paper (A4, page numbers)."""
    return render_template("admin/evidence_print.html", active="evidence", pdf_max=PDF_MAX,
                           **_printable(cycle_id))


@bp.route("/evidence/<id:cycle_id>/evidence.pdf")
def evidence_pdf(cycle_id: int):
    """The printable page as a PDF. Where WeasyPrint cannot load (no Pango), the printable page
    says so and leaves the PDF to the browser's Print."""
    svc = services()
    with svc.db.read() as session:
        cycle = _cycle(session, cycle_id)
        filename = f"signoff-{cycle.policy.slug}-{cycle.year}-evidence.pdf"
        people = sum(_evidence(svc, session, cycle, now(), paged=True)["sizes"].values())
    if people > PDF_MAX:
        flash(f"This cycle lists {people:,} people: a PDF of more than {PDF_MAX:,} takes minutes "
              "to make here (about 11 seconds for 5,000). Use your browser's Print command to "
              "save this page as a PDF, or download the CSV.", "problem")
        return redirect(url_for("admin.evidence_print", cycle_id=cycle_id), 303)
    missing = pdf.missing()
    if missing:
        log.warning("evidence PDF not made: WeasyPrint cannot load here (%s)", missing)
        flash("This server cannot make PDFs: WeasyPrint, which makes them, needs the Pango "
              "library installed (see the README's dependencies). This is the same evidence as "
              "a printable page: use your browser's Print command to print it or save it as a "
              "PDF.", "problem")
        return redirect(url_for("admin.evidence_print", cycle_id=cycle_id), 303)
    html = render_template("admin/evidence_print.html", active="evidence", pdf_max=PDF_MAX,
                           **_printable(cycle_id))
    answer = pdf.response(html)
    answer.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return answer


def _printable(cycle_id: int) -> dict:
    """The printable page's values: everyone, and when and by whom it was produced."""
    svc = services()
    moment = now()
    with svc.db.read() as session:
        shown = _evidence(svc, session, _cycle(session, cycle_id), moment, paged=False)
    return dict(shown, produced_at=moment, produced_by=current_user.email)


def _evidence(svc, session, cycle: Cycle, moment, paged: bool) -> dict:
    """What a cycle's evidence shows: the counts, the policy text, and the people by section
    with who exempted them and their declines; a page of PER_PAGE of them (?page=), or, not
    `paged`, everyone (the printable page)."""
    lib = svc.library(session)
    current = standing.is_current(lib, cycle, moment)
    query = standing.people(lib, moment, cycle, standing.listed(current))
    section = _section(current, moment).label("section")
    counted = standing.counted(current)
    # The counts, in the database: each section's size, the tally, who has left.
    each = (query.with_only_columns(section, standing.status(moment).label("status"),
                                    counted.label("counted"), Staff.active.label("active"))
            .order_by(None).subquery())
    counts = (select(each.c.section, each.c.status, each.c.counted, each.c.active, func.count())
              .group_by(each.c.section, each.c.status, each.c.counted, each.c.active))
    sizes, statuses, left = Counter(), Counter(), 0
    for where, status_, is_counted, active, n in session.execute(counts):
        sizes[SECTIONS[where]] += n
        if is_counted:
            statuses[status_] += n
        elif not active:
            left += n
    listed = (query.add_columns(section).order_by(None)
              .order_by(section, func.lower(Staff.name), Staff.email))
    page, pages = 1, 1
    if paged:
        page, pages = paging(sum(sizes.values()), PER_PAGE)
        listed = listed.limit(PER_PAGE).offset((page - 1) * PER_PAGE)
    shown: dict[str, list[standing.Standing]] = {name: [] for name in SECTIONS}
    for staff, req, conf, status_, is_counted, due, where in session.execute(listed):
        shown[SECTIONS[where]].append(standing.Standing(
            staff, cycle.policy, cycle, req, conf, status_, bool(is_counted), due))
    # The requests shown: a page's by id; everyone's by the cycle (a list of 50,000 ids would
    # pass the databases' limits on parameters).
    asked_ids = ([s.request.id for found in shown.values() for s in found if s.request]
                 if paged else select(Request.id).where(Request.cycle_id == cycle.id))
    # Who exempted each person, from the append-only log.
    exempted_by = {e.request_id: e.actor for e in session.scalars(
        select(Event).where(Event.kind.in_(("exempted", "decline_resolved")),
                            Event.request_id.in_(asked_ids)).order_by(Event.id))}
    # Everyone's declines ("I can't confirm this"), open or resolved, for the evidence.
    declined: dict[int, list[Decline]] = {}
    for d in session.scalars(select(Decline).where(Decline.request_id.in_(asked_ids))
                             .order_by(Decline.id)):
        declined.setdefault(d.request_id, []).append(d)
    asked = reports.cycle_version(session, cycle)
    # Every text of the cycle, with its approvals: the one it opened with, each confirmed, and
    # (while it is the current cycle) the one in force now; oldest first.
    confirmed = select(Confirmation.policy_version_id).join(
        Request, Request.id == Confirmation.request_id).where(Request.cycle_id == cycle.id)
    in_force = library.current_version(session, cycle.policy_id) if current else None
    wanted = {v.id for v in (asked, in_force) if v is not None}
    versions = list(session.scalars(
        select(PolicyVersion).where(PolicyVersion.id.in_(wanted) | PolicyVersion.id.in_(confirmed))
        .order_by(PolicyVersion.id)))
    for v in versions:
        _ = v.approvals
    # Where each section's people are, for a section with none on this page.
    first, pages_of = 0, {}
    for name in SECTIONS:
        if sizes[name]:
            pages_of[name] = (first // PER_PAGE + 1, (first + sizes[name] - 1) // PER_PAGE + 1)
        first += sizes[name]
    return dict(cycle=cycle, shown=shown, sizes=sizes, pages_of=pages_of,
                tally=standing.Tally.of(statuses.elements()), left=left,
                exempted_by=exempted_by, declined=declined, versions=versions, asked=asked,
                in_force=in_force, approved_line=library.approved_line,
                page=page, pages=pages, per_page=PER_PAGE, tz=svc.tz, setting=svc.config.setting)


@bp.route("/evidence/<id:cycle_id>/export.csv")
def export(cycle_id: int):
    """The cycle's CSV, streamed as it is read: the first rows leave before the last are read."""
    svc = services()
    moment = now()
    with svc.db.read() as session:
        cycle = _cycle(session, cycle_id)
        filename = f"signoff-{cycle.policy.slug}-{cycle.year}.csv"

    def chunks():
        with svc.db.read_streaming() as session:
            yield from reports.csv_chunks(reports.cycle_rows(svc, session,
                                                             _cycle(session, cycle_id), moment))

    return Response(stream_with_context(chunks()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
