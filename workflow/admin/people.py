"""The roster in the console: list with status (search, sort, filter), add, edit, deactivate, and
a roster upload that shows what would change before anything is written; where a file's headings
are not ones we know, the admin says which column is which."""

from __future__ import annotations

from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session
from wtforms.fields.choices import SelectChoice

from .. import events, requests, roster, standing
from ..policies import setting_id
from ..services import services
from ..models import Policy, RosterUpload, Staff
from . import bp, now, paging, person_or_404
from .forms import ApplyForm, ColumnsForm, StaffForm, UploadForm

# Most in need of attention first when sorting by status.
RANK = {"declined": 0, "overdue": 1, "pending": 2, "exempt": 3, "confirmed": 4, "dropped": 5,
        "inactive": 6}
PAGE = 100  # people a page: a roster of 50,000 is searched, filtered and paged in the database


def _sorts(rank):
    """Each sort's ORDER BY, the person's name (then address) breaking ties."""
    name = (func.lower(Staff.name), Staff.email)
    return {"name": name, "email": (Staff.email,), "role": (func.lower(Staff.role), *name),
            "status": (rank, *name), "start": (Staff.start_date.is_not(None), Staff.start_date,
                                               *name)}


@bp.route("/people")
def people():
    svc = services()
    q = request.args.get("q", "").strip()[:200]
    sort = request.args.get("sort", "name")
    wanted = request.args.get("status", "")
    problem = None
    moment = now()
    # Each person's status in each policy's current cycle (standing's one definition), and their
    # most pressing one for sorting.
    if sort not in _sorts(None):
        problem = f"Cannot sort by {sort[:40]!r}; sorted by name instead."
        sort = "name"
    if wanted and wanted not in RANK:
        problem = f"There is no status {wanted[:40]!r}; showing everyone."
        wanted = ""
    with svc.db.read() as session:
        lib = svc.library(session)
        each = (standing.people(lib, moment, who=standing.concerned())
                .with_only_columns(Staff.id.label("staff_id"), Policy.id.label("policy_id"),
                                   standing.status(moment).label("status"))
                .order_by(None).subquery())
        ranks = (select(each.c.staff_id, func.min(case(RANK, value=each.c.status, else_=9))
                        .label("rank")).group_by(each.c.staff_id).subquery())
        sorts = _sorts(ranks.c.rank)
        everyone = select(Staff).where(Staff.setting_id == setting_id(session))
        found = everyone
        if q:
            needle = q.lower()
            found = found.where(or_(func.lower(Staff.name).contains(needle, autoescape=True),
                                    Staff.email.contains(needle, autoescape=True),
                                    func.lower(Staff.role).contains(needle, autoescape=True)))
        if wanted:
            found = found.where(Staff.id.in_(select(each.c.staff_id)
                                             .where(each.c.status == wanted)))
        total = session.scalar(select(func.count()).select_from(everyone.subquery()))
        matched = session.scalar(select(func.count()).select_from(found.subquery()))
        page, pages = paging(matched, PAGE)
        if sort == "status":
            found = found.outerjoin(ranks, ranks.c.staff_id == Staff.id)
        shown = list(session.scalars(found.order_by(*sorts[sort])
                                     .limit(PAGE).offset((page - 1) * PAGE)))
        configured = standing.in_use(lib, session)
        statuses: dict[tuple[int, int], str] = {
            (sid, pid): status for sid, pid, status in session.execute(
                standing.people(lib, moment, who=and_(standing.concerned(),
                                                      Staff.id.in_([p.id for p in shown])))
                .with_only_columns(Staff.id, Policy.id, standing.status(moment))
                .order_by(None))}
    rows = [{"person": p, "statuses": [(c, statuses.get((p.id, c.id), ""))
                                       for c in configured]} for p in shown]
    return render_template("admin/people.html", active="people", rows=rows, q=q, sort=sort,
                           sorts=list(sorts), policies=configured, wanted=wanted,
                           statuses=list(RANK), problem=problem, total=total, matched=matched,
                           page=page, pages=pages, first=(page - 1) * PAGE + 1,
                           upload=UploadForm())


def _clean(form: StaffForm) -> roster.Row | None:
    """The form as the roster would store it, or None after putting the problem on the form."""
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
    return roster.Row(0, name, email, roster.clean_text(form.role.data or ""),
                      form.start_date.data, form.active.data,
                      roster.clean_text(form.first_name.data or "") or roster.first_word(name),
                      roster.groups_of(form.groups.data or ""))


def _taken(session: Session, email: str, except_id: int | None = None) -> bool:
    query = select(Staff.id).where(Staff.setting_id == setting_id(session), Staff.email == email)
    if except_id is not None:
        query = query.where(Staff.id != except_id)
    return session.scalar(query) is not None


@bp.route("/people/new", methods=["GET", "POST"])
def add_person():
    form = StaffForm()
    if request.method != "POST":
        return render_template("admin/person_form.html", active="people", form=form, person=None)
    row = _clean(form) if form.validate() else None
    if row is None:
        return render_template("admin/person_form.html", active="people", form=form,
                               person=None), 400
    svc = services()
    moment = now()
    with svc.db.write() as session:
        if _taken(session, row.email):
            form.email.errors.append(f"{row.email} is already on the roster.")
        else:
            roster.apply(session, setting_id(session), [row], moment, actor=current_user.email)
            session.flush()
            requests.after_change(session, svc.library(session), moment,
                                  staff_ids=[s.id for s in session.scalars(
                                      select(Staff).where(Staff.email == row.email))])
            staff_id = session.scalar(select(Staff.id).where(
                Staff.setting_id == setting_id(session), Staff.email == row.email))
    if form.email.errors:
        return render_template("admin/person_form.html", active="people", form=form,
                               person=None), 409
    flash(f"{row.name} is on the roster. The scheduler sends their first reminder on its next "
          "run.", "ok")
    return redirect(url_for("admin.person", staff_id=staff_id), code=303)


@bp.route("/people/<id:staff_id>/edit", methods=["GET", "POST"])
def edit_person(staff_id: int):
    svc = services()
    with svc.db.read() as session:
        person = person_or_404(session, staff_id)
    if request.method != "POST":
        form = StaffForm(obj=person)
        form.groups.data = "; ".join(person.groups or ())
        return render_template("admin/person_form.html", active="people", form=form, person=person)
    form = StaffForm()
    row = _clean(form) if form.validate() else None
    if row is None:
        return render_template("admin/person_form.html", active="people", form=form,
                               person=person), 400
    moment = now()
    with svc.db.write() as session:
        stored = session.get(Staff, staff_id)
        if _taken(session, row.email, except_id=staff_id):
            form.email.errors.append(f"{row.email} belongs to someone else on the roster.")
        else:
            changes = {}
            for attr in ("name", "first_name", "email", "role", "start_date", "active", "groups"):
                value, before = getattr(row, attr), getattr(stored, attr)
                if attr == "groups":
                    value, before = list(value), list(before or ())
                if before != value:
                    changes[attr] = [roster.logged(before), roster.logged(value)]
                    setattr(stored, attr, value)
            if changes:
                stored.updated_at = moment
                events.record(session, "staff_updated", moment, actor=current_user.email,
                              staff_id=staff_id, changes=changes)
                session.flush()
                requests.after_change(session, svc.library(session), moment,
                                      staff_ids=[staff_id])
    if form.email.errors:
        return render_template("admin/person_form.html", active="people", form=form,
                               person=person), 409
    flash(f"Saved {row.name}." if changes else "Nothing had changed.", "ok")
    return redirect(url_for("admin.person", staff_id=staff_id), code=303)


@bp.route("/people/<id:staff_id>/active", methods=["POST"])
def set_active(staff_id: int):
    """Deactivate (or reactivate) someone: inactive people get nothing and appear in no digest."""
    wanted = request.form.get("active") == "yes"
    svc = services()
    moment = now()
    with svc.db.write() as session:
        person = person_or_404(session, staff_id)
        if person.active != wanted:
            row = roster.Row(0, person.name, person.email, active=wanted)
            roster.apply(session, person.setting_id, [row], moment, actor=current_user.email)
            session.flush()
            requests.after_change(session, svc.library(session), moment, staff_ids=[staff_id])
        name = person.name
    flash(f"{name} is {'active' if wanted else 'inactive'}.", "ok")
    return redirect(url_for("admin.person", staff_id=staff_id), code=303)


# --- roster upload -----------------------------------------------------------------------------
# An upload is kept in the database between its preview and being applied (a roster can be larger
# than a cookie), for the admin who made it, with whether it is the whole staff list and, where
# its headings were not ones we know, which column is which.

GONE = ("That upload is no longer available: it was applied already, or was kept for a day. "
        "Please upload the file again.")


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
        roster.parse(data, name)
    except roster.MissingColumns:
        pass  # the admin can say which column is which
    except roster.RosterError as exc:
        return _upload_page(problems=exc.problems, name=name, status=400)
    with services().db.write() as session:
        upload_id = session.scalar(insert(RosterUpload).values(
            setting_id=setting_id(session), admin_id=current_user.id, name=name, data=data,
            full=form.full.data, created_at=now()).returning(RosterUpload.id))
    return _preview(upload_id)


@bp.route("/people/upload/columns", methods=["POST"])
def choose_columns():
    form = ColumnsForm()
    found = _mine(form.upload.data)
    if found is None:
        return _upload_page(problems=[GONE], status=400)
    headings = _headings(found.data, found.name)
    if not form.validate():
        _offer(form, headings)
        return _preview(found.id, columns_form=form, status=400)
    # A column the file has, or nothing (anything else, as a forged value, is nothing too).
    offered = {str(i): i for i in range(len(headings))}
    chosen = {f: offered[getattr(form, f).data] for f in roster.LABELS
              if getattr(form, f).data in offered}
    with services().db.write() as session:
        session.execute(update(RosterUpload).where(RosterUpload.id == found.id)
                        .values(columns=chosen))
    return _preview(found.id)


def _upload_id(text: str | None) -> int | None:
    """The upload a form names, if it names one at all (a forged value names none)."""
    return int(text) if text and text.isdigit() and len(text) <= 9 else None


def _mine(text: str | None) -> RosterUpload | None:
    """This admin's upload, by the id a form carried."""
    upload_id = _upload_id(text)
    if upload_id is None:
        return None
    with services().db.read() as session:
        return session.scalars(select(RosterUpload).where(
            RosterUpload.id == upload_id, RosterUpload.admin_id == current_user.id)).first()


def _headings(data: bytes, name: str) -> list[str]:
    try:
        roster.parse(data, name, columns={})  # no column chosen: it says what the file has
    except roster.MissingColumns as exc:
        return exc.headings
    except roster.RosterError:
        pass
    return []


def _offer(form: ColumnsForm, headings: list[str], chosen: dict[str, int] | None = None) -> None:
    choices = [SelectChoice("", "— not in the file —")] + [
        SelectChoice(str(i), h or f"column {i + 1}") for i, h in enumerate(headings)]
    for name in roster.LABELS:
        select_field = getattr(form, name)
        select_field.choices = choices
        if chosen is not None:
            select_field.data = str(chosen[name]) if name in chosen else ""


def _preview(upload_id: int, columns_form: ColumnsForm | None = None, status: int = 200):
    """What applying the upload would do, or why it cannot be applied yet."""
    svc = services()
    with svc.db.read() as session:
        found = session.get(RosterUpload, upload_id)
        ctx = {"name": found.name, "full": found.full}
        try:
            parsed = roster.parse(found.data, found.name, columns=found.columns)
        except roster.MissingColumns as exc:
            form = columns_form or ColumnsForm(formdata=None, upload=str(upload_id))
            if columns_form is None:
                _offer(form, exc.headings, roster.recognise(exc.headings) | (found.columns or {}))
            return _upload_page(problems=exc.problems, columns_form=form, status=400, **ctx)
        except roster.RosterError as exc:
            return _upload_page(problems=exc.problems, status=400, **ctx)
        result = roster.plan(session, setting_id(session), parsed.rows, found.full)
    return _upload_page(result=result, parsed=parsed, status=status,
                        apply_form=ApplyForm(formdata=None, upload=str(upload_id)), **ctx)


def _upload_page(status: int = 200, **ctx):
    return render_template("admin/upload.html", active="people", shown=roster.shown,
                           **ctx), status


@bp.route("/people/upload/apply", methods=["POST"])
def apply_upload():
    form = ApplyForm()
    upload_id = _upload_id(form.upload.data)
    gone = _upload_page(problems=[GONE], status=400)
    if not form.validate() or upload_id is None:
        return gone
    try:
        with services().db.write() as session:
            # Taking the row is what makes an upload apply once: a second apply finds nothing.
            taken = session.execute(delete(RosterUpload).where(
                RosterUpload.id == upload_id, RosterUpload.admin_id == current_user.id)
                .returning(RosterUpload.data, RosterUpload.name, RosterUpload.full,
                           RosterUpload.columns)).first()
            if taken is None:
                return gone
            # It parsed for the preview; if it is refused now, the rollback keeps it.
            parsed = roster.parse(taken.data, taken.name, columns=taken.columns)
            moment = now()
            result = roster.apply(session, setting_id(session), parsed.rows, moment,
                                  actor=current_user.email, full=taken.full)
            session.flush()
            requests.after_change(session, services().library(session), moment)
    except roster.RosterError as exc:
        return _upload_page(problems=exc.problems, status=400)
    flash(f"Roster updated: {result.summary()}.", "ok")
    return redirect(url_for("admin.people"), code=303)
