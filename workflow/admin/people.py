"""The roster in the console: list with status (search, sort), add, edit, deactivate, and a roster
CSV upload that shows what would change before anything is written."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from .. import events, roster
from ..services import services
from ..models import RosterUpload, Setting, Staff
from ..standing import overviews
from . import bp, now
from .forms import ApplyForm, StaffForm, UploadForm

SORTS = {
    "name": lambda p: (p["person"].name.lower(), p["person"].email),
    "email": lambda p: p["person"].email,
    "role": lambda p: ((p["person"].role or "").lower(), p["person"].name.lower()),
    "status": lambda p: (p["rank"], p["person"].name.lower()),
    "start": lambda p: (p["person"].start_date or dt.date.min, p["person"].name.lower()),
}
# Most in need of attention first when sorting by status.
RANK = {"overdue": 0, "pending": 1, "exempt": 2, "confirmed": 3, "inactive": 4}


def setting_id(session: Session) -> int | None:
    return session.scalar(select(Setting.id).order_by(Setting.id).limit(1))


@bp.route("/people")
def people():
    svc = services()
    q = request.args.get("q", "").strip()[:200]
    sort = request.args.get("sort", "name")
    problem = None
    if sort not in SORTS:
        problem = f"Cannot sort by {sort[:40]!r}; sorted by name instead."
        sort = "name"
    with svc.db.read() as session:
        cycles = overviews(svc, session, now(), include_inactive=True)
    rows: dict[int, dict] = {}
    for overview in cycles:
        for s in overview.people:
            row = rows.setdefault(s.person.id, {"person": s.person, "statuses": [], "rank": 9})
            row["statuses"].append((overview.policy, s.status))
            row["rank"] = min(row["rank"], RANK.get(s.status, 9))
    found = list(rows.values())
    if q:
        needle = q.lower()
        found = [r for r in found if needle in r["person"].name.lower()
                 or needle in r["person"].email or needle in (r["person"].role or "").lower()]
    found.sort(key=SORTS[sort])
    return render_template("admin/people.html", active="people", rows=found, q=q, sort=sort,
                           sorts=list(SORTS), policies=[o.policy for o in cycles],
                           problem=problem, total=len(rows), upload=UploadForm())


def _clean(form: StaffForm) -> tuple[str, str, str] | None:
    """Name, address and role as stored, or None after putting the problem on the form."""
    name = roster.clean_text(form.name.data or "")
    if not name:
        form.name.errors.append("Enter the person's name.")
    try:
        email = validate_email(form.email.data.strip(),
                               check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        form.email.errors.append(f"That is not a valid email address ({exc}).")
        email = None
    if not name or not email:
        return None
    return name, email, roster.clean_text(form.role.data or "")


def _taken(session: Session, email: str, except_id: int | None = None) -> bool:
    query = select(Staff.id).where(Staff.email == email)
    if except_id is not None:
        query = query.where(Staff.id != except_id)
    return session.scalar(query) is not None


@bp.route("/people/new", methods=["GET", "POST"])
def add_person():
    form = StaffForm()
    if request.method != "POST":
        return render_template("admin/person_form.html", active="people", form=form, person=None)
    cleaned = _clean(form) if form.validate() else None
    if cleaned is None:
        return render_template("admin/person_form.html", active="people", form=form,
                               person=None), 400
    name, email, role = cleaned
    svc = services()
    moment = now()
    with svc.db.write() as session:
        if _taken(session, email):
            form.email.errors.append(f"{email} is already on the roster.")
        else:
            row = roster.Row(0, name, email, role, form.start_date.data, form.active.data)
            roster.apply(session, setting_id(session), [row], moment, actor=current_user.email)
            staff_id = session.scalar(select(Staff.id).where(Staff.email == email))
    if form.email.errors:
        return render_template("admin/person_form.html", active="people", form=form,
                               person=None), 409
    flash(f"{name} is on the roster. The scheduler sends their first reminder on its next run.",
          "ok")
    return redirect(url_for("admin.person", staff_id=staff_id), code=303)


@bp.route("/people/<id:staff_id>/edit", methods=["GET", "POST"])
def edit_person(staff_id: int):
    svc = services()
    with svc.db.read() as session:
        person = session.get(Staff, staff_id)
    if person is None:
        abort(404)
    form = StaffForm(obj=person if request.method != "POST" else None)
    if request.method != "POST":
        return render_template("admin/person_form.html", active="people", form=form, person=person)
    cleaned = _clean(form) if form.validate() else None
    if cleaned is None:
        return render_template("admin/person_form.html", active="people", form=form,
                               person=person), 400
    name, email, role = cleaned
    moment = now()
    with svc.db.write() as session:
        stored = session.get(Staff, staff_id)
        if _taken(session, email, except_id=staff_id):
            form.email.errors.append(f"{email} belongs to someone else on the roster.")
        else:
            changes = {}
            for attr, value in (("name", name), ("email", email), ("role", role),
                                ("start_date", form.start_date.data), ("active", form.active.data)):
                before = getattr(stored, attr)
                if before != value:
                    changes[attr] = [None if before is None else str(before),
                                     None if value is None else str(value)]
                    setattr(stored, attr, value)
            if changes:
                stored.updated_at = moment
                events.record(session, "staff_updated", moment, actor=current_user.email,
                              staff_id=staff_id, changes=changes)
    if form.email.errors:
        return render_template("admin/person_form.html", active="people", form=form,
                               person=person), 409
    flash(f"Saved {name}." if changes else "Nothing had changed.", "ok")
    return redirect(url_for("admin.person", staff_id=staff_id), code=303)


@bp.route("/people/<id:staff_id>/active", methods=["POST"])
def set_active(staff_id: int):
    """Deactivate (or reactivate) someone: inactive people get nothing and appear in no digest."""
    wanted = request.form.get("active") == "yes"
    svc = services()
    moment = now()
    with svc.db.write() as session:
        person = session.get(Staff, staff_id)
        if person is None:
            abort(404)
        if person.active != wanted:
            row = roster.Row(0, person.name, person.email, None, None, wanted)
            roster.apply(session, person.setting_id, [row], moment, actor=current_user.email)
        name = person.name
    flash(f"{name} is {'active' if wanted else 'inactive'}.", "ok")
    return redirect(url_for("admin.person", staff_id=staff_id), code=303)


# --- roster upload -----------------------------------------------------------------------------

@dataclass
class Preview:
    """What an import would do, worked out without writing anything."""

    added: list[roster.Row] = field(default_factory=list)
    updated: list[tuple[roster.Row, dict]] = field(default_factory=list)
    deactivated: list[roster.Row] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changes(self) -> int:
        return len(self.added) + len(self.updated) + len(self.deactivated)


def preview(session: Session, rows: list[roster.Row]) -> Preview:
    """The same comparison roster.apply makes, read-only."""
    result = Preview()
    existing = {s.email: s for s in session.scalars(
        select(Staff).where(Staff.email.in_([r.email for r in rows])))}
    for row in rows:
        person = existing.get(row.email)
        if person is None:
            result.added.append(row)
            continue
        changes = {}
        for attr, value in (("name", row.name), ("role", row.role), ("start_date", row.start_date),
                            ("active", row.active)):
            if (value is None and attr != "name") or getattr(person, attr) == value:
                continue
            changes[attr] = (getattr(person, attr), value)
        if not changes:
            result.unchanged += 1
        elif "active" in changes and row.active is False:
            result.deactivated.append(row)
        else:
            result.updated.append((row, changes))
    return result


@bp.route("/people/upload", methods=["POST"])
def upload():
    form = UploadForm()
    if not form.validate():
        return _upload_page(problems=[e for errors in form.errors.values() for e in errors],
                            status=400)
    file = form.file.data
    name = roster.clean_text(Path(file.filename or "").name)[:100] or "roster.csv"
    data = file.read()
    try:
        rows = roster.parse(data, name)
    except roster.RosterError as exc:
        return _upload_page(problems=exc.problems, name=name, status=400)
    svc = services()
    with svc.db.write() as session:
        # Kept between preview and apply (a roster can be larger than a cookie), for this admin.
        upload_id = session.scalar(insert(RosterUpload).values(
            setting_id=setting_id(session), admin_id=current_user.id, name=name, data=data,
            created_at=now()).returning(RosterUpload.id))
    with svc.db.read() as session:
        result = preview(session, rows)
    apply_form = ApplyForm(formdata=None, upload=str(upload_id))
    return _upload_page(result=result, name=name, apply_form=apply_form)


def _upload_page(status: int = 200, **ctx):
    return render_template("admin/upload.html", active="people", **ctx), status


@bp.route("/people/upload/apply", methods=["POST"])
def apply_upload():
    form = ApplyForm()
    upload_id = form.upload.data or ""
    gone = _upload_page(problems=["That upload is no longer available: it was applied already, or "
                                  "was kept for a day. Please upload the file again."], status=400)
    if not form.validate() or not upload_id.isdigit() or len(upload_id) > 9:
        return gone
    try:
        with services().db.write() as session:
            # Taking the row is what makes an upload apply once: a second apply finds nothing.
            taken = session.execute(delete(RosterUpload).where(
                RosterUpload.id == int(upload_id), RosterUpload.admin_id == current_user.id)
                .returning(RosterUpload.data, RosterUpload.name)).first()
            if taken is None:
                return gone
            rows = roster.parse(taken.data, taken.name)  # rolls back, keeping it, if refused
            result = roster.apply(session, setting_id(session), rows, now(),
                                  actor=current_user.email)
    except roster.RosterError as exc:
        return _upload_page(problems=exc.problems, status=400)
    flash(f"Roster updated: {result.summary()}.", "ok")
    return redirect(url_for("admin.people"), code=303)

