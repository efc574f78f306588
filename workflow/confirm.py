"""The page behind a person's link: read the policy, tick its statements, confirm.

GET and HEAD only show the page, because mail scanners and link previews open every link in an
email; only the person's POST of the form records a confirmation, and a repeat keeps the first one.
"""

from __future__ import annotations

import datetime as dt
import functools
import weakref
from typing import NamedTuple

from flask import Blueprint, Flask, abort, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from wtforms import BooleanField, HiddenField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from . import declines, events, library, mailer, policies, requests, standing, tokens
from .services import services
from .models import (Approval, Confirmation, Cycle, Link, Policy, PolicyVersion, Request,
                     Setting, Staff)

bp = Blueprint("confirm", __name__)


class Gone(Exception):
    """The link was real once but no longer works; the page says why and what to do."""


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


class Version(NamedTuple):
    """The policy version the page shows and a confirmation records."""
    id: int
    sha256: str
    statements: list[str]


_current_version = aliased(PolicyVersion)

# Everything the page needs, in one statement built once: the link, its request, person, cycle,
# policy, the policy's current version (not its text: see policies.html) and any confirmation.
_PAGE = (
    select(Link.revoked_at, Request.id.label("request_id"), Request.staff_id, Request.exempt_at,
           Request.dropped_at, Request.declined_at,
           Staff.name, Staff.first_name, Cycle.year, Policy.title, Policy.state,
           Policy.schedule.label("own_schedule"), Setting.schedule.label("setting_schedule"),
           PolicyVersion.id.label("version_id"), PolicyVersion.change, PolicyVersion.note,
           PolicyVersion.in_force_at, Cycle.opens_at,
           select(func.count(Approval.id)).where(Approval.policy_version_id == PolicyVersion.id)
           .scalar_subquery().label("approvals"),
           PolicyVersion.sha256, PolicyVersion.statements, Confirmation.confirmed_at,
           Confirmation.method, Confirmation.statements.label("confirmed_statements"))
    .join(Request, Request.id == Link.request_id)
    .join(Staff, Staff.id == Request.staff_id)
    .join(Cycle, Cycle.id == Request.cycle_id)
    .join(Policy, Policy.id == Cycle.policy_id)
    .join(Setting, Setting.id == Policy.setting_id)
    .join(PolicyVersion, PolicyVersion.id == select(func.max(_current_version.id))
          .where(_current_version.policy_id == Cycle.policy_id,
                 _current_version.in_force_at.is_not(None))  # library.IN_FORCE, aliased
          .scalar_subquery())
    .outerjoin(Confirmation, (Confirmation.request_id == Request.id) & standing.LIVE)
    .where(Link.token_sha256 == bindparam("digest"))
)


_APPROVALS = (select(Approval.name, Approval.role, Approval.approved_on)
              .where(Approval.policy_version_id == bindparam("version")).order_by(Approval.id))


def _visit(token: str) -> tuple[Row, Markup, str | None]:
    """The page's row for a live link, the policy as HTML, and its approvals in words; 404 or
    Gone otherwise."""
    if not tokens.well_formed(token):
        abort(404)
    svc = services()
    # A Core connection rather than an ORM session: the page reads plain rows, and the session's
    # bookkeeping cost as much as the query itself.
    with svc.db.read_core() as conn:
        row = conn.execute(_PAGE, {"digest": tokens.digest(token)}).first()
        if row is None:
            abort(404)
        year = library.cycle_year(row.setting_schedule, row.own_schedule, svc.tz, _now())
        if row.year != year or row.state == "retired":
            raise Gone(f"This link was for the {row.year} review of the {row.title}, which has "
                       "closed. Your newest email has a link that works.")
        if row.revoked_at is not None:
            raise Gone("This link has been replaced by a newer one. Please use the link in your "
                       "most recent email.")
        # Approvals are only ever added: a version's count of them says which line is right.
        approved = _cached(svc, ("approved", row.version_id, row.approvals),
                           lambda: library.approved_line(
                               conn.execute(_APPROVALS, {"version": row.version_id}).all()))
        return row, policies.html(conn, row.version_id, row.sha256, row.title), approved


# What the page reads once per process and database: keyed by what makes it right (a version
# never changes; its approvals are only ever added).
_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cached(svc, key: tuple, make):
    found = _caches.setdefault(svc.db, {})
    if key not in found:
        found[key] = make()
    return found[key]


# The text in force before a version: what a change is shown against.
_BEFORE = (select(PolicyVersion.content).where(
    PolicyVersion.policy_id == select(PolicyVersion.policy_id)
    .where(PolicyVersion.id == bindparam("version")).scalar_subquery(),
    PolicyVersion.id < bindparam("version"), PolicyVersion.in_force_at.is_not(None))
    .order_by(PolicyVersion.id.desc()).limit(1))


def _changed(row: Row) -> dict | None:
    """What the text in force changed, when it came into force during this cycle: its note, and
    the passages removed and added (policies.changes)."""
    if row.change is None or row.in_force_at < row.opens_at:
        return None
    svc = services()

    def make() -> dict:
        with svc.db.read_core() as conn:
            older = conn.scalar(_BEFORE, {"version": row.version_id})
            newer = conn.scalar(select(PolicyVersion.content)
                                .where(PolicyVersion.id == row.version_id))
        return {"change": row.change, "note": row.note,
                "when": row.in_force_at.astimezone(svc.tz),
                "passages": policies.changes(older, newer) if older is not None else []}
    return _cached(svc, ("changed", row.version_id), make)


class DeclineForm(FlaskForm):
    """"I can't confirm this": which statement (an index; empty: the policy as a whole), and why."""

    version = HiddenField()
    statement = StringField()
    reason = TextAreaField(validators=[DataRequired("Please say why, so that the head teacher "
                                                    "can help."),
                                       Length(max=declines.REASON_MAX,
                                              message=f"Please keep it to "
                                                      f"{declines.REASON_MAX} characters.")])


@functools.lru_cache(maxsize=16)
def _form_class(statements: int) -> type[FlaskForm]:
    # One class per number of statements: WTForms prepares a form class on its first use, so a
    # class made afresh for every request would redo that work each time.
    class ConfirmForm(FlaskForm):
        version = HiddenField()

    for index in range(statements):
        setattr(ConfirmForm, f"s{index}", BooleanField())
    return ConfirmForm


def _still_to_do(svc, staff_id: int, request_id: int) -> list[str]:
    """The titles of the person's other policies they have been asked for and not yet confirmed
    this cycle (each one's link is in their email), in the console's order."""
    moment = _now()
    with svc.db.read() as session:
        lib = svc.library(session)
        return list(session.scalars(
            standing.people(lib, moment, who=Staff.id == staff_id)
            .with_only_columns(Policy.title)
            .where(Request.id.is_not(None), Request.id != request_id,
                   standing.status_in(moment, "pending", "overdue"))
            .order_by(None).order_by(Policy.position, Policy.id)))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@bp.errorhandler(Gone)
def _gone(exc: Gone):
    return render_template("message.html", title="This link no longer works", text=str(exc)), 410


@bp.route("/c/<token>", methods=["GET", "HEAD", "POST"])
def page(token: str):
    svc = services()
    row, policy_html, approved = _visit(token)
    version = Version(row.version_id, row.sha256, row.statements)
    greeting = mailer.greeting_name(row)
    ctx = {"person": {"name": row.name, "greeting": greeting}, "policy": {"title": row.title},
           "version": version, "policy_html": policy_html, "unticked": [],
           "reason_max": declines.REASON_MAX, "approved": approved}
    if row.confirmed_at is not None:
        # Not the office's note about a paper sign-off: that is for the evidence, not the person.
        # Nor the version's hash: it is evidence, and means nothing to the person.
        confirmation = {"method": row.method, "statements": row.confirmed_statements}
        return render_template("confirmed.html", confirmation=confirmation,
                               confirmed_local=row.confirmed_at.astimezone(svc.tz),
                               still_to_do=_still_to_do(svc, row.staff_id, row.request_id), **ctx)
    if row.exempt_at is not None:
        return render_template("message.html", title="Nothing to do",
                               text=f"{greeting}, you have been excused from this year's "
                                    f"review of the {row.title}. No action is needed.")
    if row.dropped_at is not None:
        return render_template("message.html", title="Nothing to do",
                               text=f"{greeting}, the {row.title} no longer applies to you, so "
                                    "there is nothing to confirm. No action is needed.")
    if row.declined_at is not None:
        with svc.db.read() as session:
            ctx["declined"] = declines.open_decline(session, row.request_id)
            ctx["declined_local"] = row.declined_at.astimezone(svc.tz)
    ctx["changed"] = _changed(row)
    if request.method == "POST" and request.form.get("action") == "decline":
        return _decline(svc, token, row, version, ctx)
    if request.method != "POST":
        # Nothing ticked yet: the page needs no form object, only the CSRF token and the version.
        return render_template("confirm.html", form=None, **ctx)

    form = _form_class(len(version.statements))(formdata=request.form)
    problems = []  # shown at the top of the page: they ask the person to read it again
    if not form.validate():
        problems.append("The form had expired. Please tick the statements and confirm again.")
    elif form.version.data != version.sha256:
        problems.append("The policy was updated while you were reading it. Please read it again "
                        "and tick the statements below.")
        form.version.data = version.sha256
    else:
        ctx["unticked"] = [i for i in range(len(version.statements)) if not form[f"s{i}"].data]
        if ctx["unticked"]:
            # Shown by the boxes, the first missed one focused (autofocus: the page runs no
            # scripts), not at the top of a policy many screens long.
            ctx["tick_error"] = ("Please tick every statement to confirm — "
                                 f"{len(ctx['unticked'])} of {len(version.statements)} not "
                                 "ticked yet.")
    if problems or ctx["unticked"]:
        return render_template("confirm.html", form=form, problems=problems, **ctx), 400

    record(svc, row.request_id, version, method="self", ip=request.remote_addr,
           agent=request.headers.get("User-Agent", "")[:512], now=_now())
    # Post/Redirect/Get: a reload shows the result instead of asking to resubmit.
    return redirect(url_for("confirm.page", token=token), code=303)


def _decline(svc, token: str, row: Row, version: Version, ctx: dict):
    """The "I can't confirm this" form: recorded, then the page again (Post/Redirect/Get), which
    says the head teacher has been told and still lets them confirm; or shown again with what
    to fix."""
    form = DeclineForm(formdata=request.form)
    ctx["decline_form"] = form
    if not form.validate():
        if form.csrf_token.errors:
            ctx["decline_problem"] = "The form had expired. Please say again why not, and send it."
        return render_template("confirm.html", form=None, **ctx), 400
    choices = {"": None, **{str(i): text for i, text in enumerate(version.statements)}}
    if form.version.data != version.sha256 or form.statement.data not in choices:
        form.version.data = version.sha256
        ctx["decline_problem"] = ("The policy was updated while you were reading it. Please read "
                                  "it again, then say which part you cannot confirm.")
        return render_template("confirm.html", form=None, **ctx), 400
    declines.record(svc, row.request_id, statement=choices[form.statement.data],
                    reason=form.reason.data.strip(), now=_now(), ip=request.remote_addr,
                    agent=request.headers.get("User-Agent", "")[:512])
    return redirect(url_for("confirm.page", token=token), code=303)


def record(svc, request_id: int, version, *, method: str, now: dt.datetime, ip: str | None = None,
           agent: str | None = None, actor: str | None = None, reason: str | None = None,
           signed_on: dt.date | None = None, paper_kept: str | None = None) -> bool:
    """Record a confirmation unless one exists; returns False when the first one is kept.

    A paper sign-off (method "paper") has the date on the form (`signed_on`), where the form is
    kept (`paper_kept`) and the office's own note (`reason`)."""
    try:
        with svc.db.write() as session:
            if session.scalars(select(Confirmation.id).where(Confirmation.request_id == request_id,
                                                             standing.LIVE)).first():
                return False
            req = session.get(Request, request_id)
            session.add(Confirmation(request_id=request_id, confirmed_at=now,
                                     policy_version_id=version.id, version_sha256=version.sha256,
                                     statements=list(version.statements), method=method,
                                     ip_address=ip, user_agent=agent, recorded_by=actor,
                                     reason=reason, signed_on=signed_on, paper_kept=paper_kept))
            if requests.confirm(req, now):
                declines.confirmed(session, req, now, actor or "staff")
            events.record(session, "confirmed", now, actor=actor or "staff", staff_id=req.staff_id,
                          request_id=request_id, method=method, version=version.sha256, ip=ip,
                          reason=reason, signed_on=signed_on.isoformat() if signed_on else None,
                          paper_kept=paper_kept)
    except IntegrityError:
        return False  # a simultaneous POST won the race; the first record stands
    return True
