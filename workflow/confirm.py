"""The page behind a person's link: read the policy, tick its statements, confirm.

GET and HEAD only show the page, because mail scanners and link previews open every link in an
email; only the person's POST of the form records a confirmation, and a repeat keeps the first one.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Flask, abort, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from wtforms import BooleanField, HiddenField

from . import events, policies, tokens
from .app import services
from .models import Confirmation, Cycle, Link, Request

bp = Blueprint("confirm", __name__)


class Gone(Exception):
    """The link was real once but no longer works; the page says why and what to do."""


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _link(token: str) -> Link:
    if not tokens.well_formed(token):
        abort(404)
    svc = services()
    with svc.db.read() as session:
        # One query loads the link with what the page needs (request, person, cycle, policy).
        link = session.scalars(
            select(Link).filter_by(token_sha256=tokens.digest(token))
            .options(joinedload(Link.request).joinedload(Request.staff),
                     joinedload(Link.request).joinedload(Request.cycle)
                     .joinedload(Cycle.policy))).first()
        if link is None:
            abort(404)
        # Load what the page needs while the session is open.
        req = link.request
        _ = (req.staff, req.cycle.policy)
        if req.cycle.year != svc.calendar.cycle_year(_now()):
            raise Gone(f"This link was for the {req.cycle.year} review of the "
                       f"{req.cycle.policy.title}, which has closed. Your newest email has a link "
                       "that works.")
        if link.revoked_at is not None:
            raise Gone("This link has been replaced by a newer one. Please use the link in your "
                       "most recent email.")
        return link


def _form(statements: list[str], data=None) -> FlaskForm:
    class ConfirmForm(FlaskForm):
        version = HiddenField()

    for index, _ in enumerate(statements):
        setattr(ConfirmForm, f"s{index}", BooleanField())
    return ConfirmForm(formdata=data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@bp.errorhandler(Gone)
def _gone(exc: Gone):
    return render_template("message.html", title="This link no longer works", text=str(exc)), 410


@bp.route("/c/<token>", methods=["GET", "HEAD", "POST"])
def page(token: str):
    svc = services()
    link = _link(token)
    req = link.request
    with svc.db.read() as session:
        version = policies.current_version(session, req.cycle.policy_id)
        confirmation = session.scalars(select(Confirmation).filter_by(request_id=req.id)).first()
        if confirmation is not None:
            _ = confirmation.policy_version
    tz = svc.calendar.tz
    ctx = {"person": req.staff, "policy": req.cycle.policy, "version": version,
           "policy_html": policies.render(version.content), "tz": tz, "request_row": req}
    if confirmation is not None:
        return render_template("confirmed.html", confirmation=confirmation,
                               confirmed_local=confirmation.confirmed_at.astimezone(tz), **ctx)
    if req.exempt_at is not None:
        return render_template("message.html", title="Nothing to do",
                               text=f"{req.staff.name}, you have been excused from this year's "
                                    f"review of the {req.cycle.policy.title}. No action is needed.")
    form = _form(version.statements, request.form if request.method == "POST" else None)
    if request.method != "POST":
        form.version.data = version.sha256
        return render_template("confirm.html", form=form, **ctx)

    problems = []
    if not form.validate():
        problems.append("The form had expired. Please tick the statements and confirm again.")
    elif form.version.data != version.sha256:
        problems.append("The policy was updated while you were reading it. Please read it again "
                        "and tick the statements below.")
        form.version.data = version.sha256
    else:
        unticked = [i for i in range(len(version.statements)) if not form[f"s{i}"].data]
        if unticked:
            problems.append("Please tick every statement to confirm — "
                            f"{len(unticked)} of {len(version.statements)} not ticked yet.")
    if problems:
        return render_template("confirm.html", form=form, problems=problems, **ctx), 400

    record(svc, req.id, version, method="self", ip=request.remote_addr,
           agent=request.headers.get("User-Agent", "")[:512], now=_now())
    # Post/Redirect/Get: a reload shows the result instead of asking to resubmit.
    return redirect(url_for("confirm.page", token=token), code=303)


def record(svc, request_id: int, version, *, method: str, now: dt.datetime, ip: str | None = None,
           agent: str | None = None, actor: str | None = None, reason: str | None = None) -> bool:
    """Record a confirmation unless one exists; returns False when the first one is kept."""
    try:
        with svc.db.write() as session:
            if session.scalars(select(Confirmation.id).filter_by(request_id=request_id)).first():
                return False
            req = session.get(Request, request_id)
            session.add(Confirmation(request_id=request_id, confirmed_at=now,
                                     policy_version_id=version.id, version_sha256=version.sha256,
                                     statements=list(version.statements), method=method,
                                     ip_address=ip, user_agent=agent, recorded_by=actor,
                                     reason=reason))
            req.closed_at = now
            req.next_check_at = None
            events.record(session, "confirmed", now, actor=actor or "staff", staff_id=req.staff_id,
                          request_id=request_id, method=method, version=version.sha256, ip=ip,
                          reason=reason)
    except IntegrityError:
        return False  # a simultaneous POST won the race; the first record stands
    return True
