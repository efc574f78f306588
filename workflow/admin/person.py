"""One person: their history from the event log, their confirmation evidence, and what an admin can
do about their sign-off this cycle. Every action is a POST and an event naming the admin."""

from __future__ import annotations

import datetime as dt

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import confirm, declines, events, library, planner, requests
from ..library import Entry
from ..services import Services, services
from ..models import Confirmation, Cycle, Decline, Event, Link, Request, Staff
from ..outbox import enqueue, request_key, resend_key
from ..standing import in_audience, overviews
from . import bp, now, person_or_404
from .forms import ExtendForm, PaperForm, ReasonForm, ResolveForm


NOT_CHANGED = "Nothing was changed: please fix the problem shown below."


class Refused(Exception):
    """The action cannot be done as asked; the message says why. Nothing was changed."""


def _forms(slug: str, bound: tuple[str, object] | None = None) -> dict:
    """The forms of one policy's section: fresh ones, except the one just submitted with errors."""
    forms = {"extend": ExtendForm(prefix=f"{slug}-extend", formdata=None),
             "exempt": ReasonForm(prefix=f"{slug}-exempt", formdata=None),
             "paper": PaperForm(prefix=f"{slug}-paper", formdata=None),
             "resolve": ResolveForm(prefix=f"{slug}-resolve", formdata=None)}
    if bound is not None:
        forms[bound[0]] = bound[1]
    return forms


def _page(staff_id: int, bound: tuple[str, str, object] | None = None, problem: str | None = None,
          status: int = 200):
    svc = services()
    moment = now()
    with svc.db.read() as session:
        person = person_or_404(session, staff_id)
        lib = svc.library(session)
        standings = [s for o in overviews(lib, session, moment, include_inactive=True,
                                          staff_id=staff_id) for s in o.people]
        history = list(session.scalars(select(Event).where(Event.staff_id == staff_id)
                                       .order_by(Event.at, Event.id)))
        for s in standings:
            if s.confirmation is not None:
                _ = s.confirmation.policy_version
        asked = [s.request.id for s in standings if s.request is not None]
        declined: dict[int, list[Decline]] = {}
        for d in session.scalars(select(Decline).where(Decline.request_id.in_(asked))
                                 .order_by(Decline.id)):
            declined.setdefault(d.request_id, []).append(d)
        superseded: dict[int, list[Confirmation]] = {}
        for c in session.scalars(select(Confirmation).where(
                Confirmation.request_id.in_(asked), Confirmation.superseded_at.is_not(None))
                .order_by(Confirmation.id)):
            superseded.setdefault(c.request_id, []).append(c)
        calendars = {s.request.cycle_id: lib.get(s.policy.id).calendar
                     for s in standings if s.request is not None}
    sections = []
    for s in standings:
        slug_bound = (bound[1], bound[2]) if bound and bound[0] == s.policy.slug else None
        sections.append((s, _forms(s.policy.slug, slug_bound)))
    return render_template("admin/person.html", active="people", person=person, sections=sections,
                           history=history, tz=svc.tz, problem=problem, declined=declined,
                           superseded=superseded,
                           outcomes=declines.OUTCOMES,
                           today=lib.calendar.local_date(moment), describe=describe,
                           within=within(svc), confirm_by=lambda req: requests.current_due(
                               req, calendars[req.cycle_id])), status


@bp.route("/people/<id:staff_id>")
def person(staff_id: int):
    return _page(staff_id)


def _policy(session: Session, svc: Services, slug: str) -> Entry:
    found = svc.library(session).by_slug(slug)
    if found is None:
        abort(404)
    return found


def _request(svc: Services, session: Session, person: Staff, policy: Entry,
             moment: dt.datetime) -> Request:
    """The person's request in the current cycle, made now if the tick has not reached them yet."""
    year = policy.cycle_year(moment)
    cycle = session.scalars(select(Cycle).filter_by(policy_id=policy.id, year=year)).first()
    if cycle is None:
        raise Refused(f"The {year} cycle of the {policy.title} has not opened yet: the scheduler "
                      "opens it on its next run.")
    if session.scalar(select(Staff.id).where(Staff.id == person.id,
                                             in_audience(policy.id))) is None:
        raise Refused(f"The {policy.title} is not for {person.name}: it is for "
                      f"{', '.join(policy.audience)}. Add one of those groups to them on the "
                      "edit page first.")
    return requests.ask(session, svc.db.insert, cycle.id, person.id, moment)


def _open_request(svc, session, person, policy, moment) -> Request:
    if not person.active:
        raise Refused(f"{person.name} is inactive. Make them active on the edit page first.")
    req = _request(svc, session, person, policy, moment)
    if req.declined_at is not None:
        raise Refused(f"{person.name} has said they cannot confirm the {policy.title}. Record "
                      "what happens now below first; nothing was changed.")
    if req.closed_at is not None:
        done = ("exempt" if req.exempt_at is not None else "confirmed" if req.dropped_at is None
                else "no longer asked (it stopped applying to them); the next scheduler run asks "
                     "them again")
        raise Refused(f"{person.name} is already {done} for this cycle; nothing was changed.")
    return req


def _queue_link(svc: Services, session: Session, req: Request, person: Staff,
                moment: dt.datetime) -> None:
    """Queue an email with a fresh personal link; the next scheduler run sends it."""
    if req.stage_sent < planner.REMINDER:
        # Nothing sent yet: this is their first reminder, queued exactly as the tick would.
        key, stage = request_key(req.id, planner.REMINDER, req.round), planner.REMINDER
        requests.queue_first(req)
    else:
        # No stage: the outbox sends the reminder text and logs it as "reminded".
        key, stage = resend_key(req.id), None
    enqueue(session, svc.db.insert, key=key, kind="reminder", stage=stage, request_id=req.id,
            staff_id=person.id, to_email=person.email, to_name=person.name, now=moment)


def _act(staff_id: int, slug: str, action) -> object:
    """Run one action in one transaction; a Refused comes back as a message and changes nothing."""
    svc = services()
    moment = now()
    try:
        with svc.db.write() as session:
            person = person_or_404(session, staff_id)
            policy = _policy(session, svc, slug)
            message = action(svc, session, person, policy, moment)
    except Refused as exc:
        return _page(staff_id, problem=str(exc), status=409)
    flash(message, "ok")
    return redirect(url_for("admin.person", staff_id=staff_id), code=303)


@bp.route("/people/<id:staff_id>/<slug>/resend", methods=["POST"])
def resend(staff_id: int, slug: str):
    def action(svc, session, person, policy, moment):
        req = _open_request(svc, session, person, policy, moment)
        _queue_link(svc, session, req, person, moment)
        events.record(session, "resend_queued", moment, actor=current_user.email,
                      staff_id=person.id, request_id=req.id)
        return (f"A fresh link for {person.name} is queued; it goes out with the scheduler's next "
                f"run ({within(svc)}).")
    return _act(staff_id, slug, action)


@bp.route("/people/<id:staff_id>/<slug>/new-link", methods=["POST"])
def new_link(staff_id: int, slug: str):
    def action(svc, session, person, policy, moment):
        req = _open_request(svc, session, person, policy, moment)
        revoked = session.execute(update(Link).where(Link.request_id == req.id,
                                                     Link.revoked_at.is_(None))
                                  .values(revoked_at=moment)).rowcount
        _queue_link(svc, session, req, person, moment)
        events.record(session, "link_reissued", moment, actor=current_user.email,
                      staff_id=person.id, request_id=req.id, revoked=revoked)
        return (f"{person.name}'s old links no longer work ({revoked} stopped). A new link is "
                f"queued and goes out with the scheduler's next run ({within(svc)}).")
    return _act(staff_id, slug, action)


@bp.route("/people/<id:staff_id>/<slug>/extend", methods=["POST"])
def extend(staff_id: int, slug: str):
    form = ExtendForm(prefix=f"{slug}-extend")
    if not form.validate():
        return _page(staff_id, (slug, "extend", form), problem=NOT_CHANGED, status=400)

    def action(svc, session, person, policy, moment):
        cal = policy.calendar
        req = _open_request(svc, session, person, policy, moment)
        day = form.due.data
        if day <= cal.local_date(moment):
            raise Refused("The new due date must be after today; nothing was changed.")
        # Before the first reminder goes, only an earlier extension sets a due date.
        current = requests.current_due(req, cal)
        if current is not None and day <= current:
            raise Refused("The new due date must be later than their current one, "
                          f"{current:%A %-d %B %Y}; nothing was changed.")
        if cal.slot(day) >= cal.cycle_opens(req.cycle.year + 1):
            raise Refused("The new due date must be before next year's cycle opens; nothing was "
                          "changed.")
        requests.extend(req, cal, day)
        due = req.due_extended_to
        events.record(session, "due_extended", moment, actor=current_user.email,
                      staff_id=person.id, request_id=req.id, due=day.isoformat(),
                      reason=form.reason.data or None)
        return f"{person.name} now has until {cal.local_date(due):%A %-d %B %Y}."
    return _act(staff_id, slug, action)


@bp.route("/people/<id:staff_id>/<slug>/exempt", methods=["POST"])
def exempt(staff_id: int, slug: str):
    form = ReasonForm(prefix=f"{slug}-exempt")
    if not form.validate():
        return _page(staff_id, (slug, "exempt", form), problem=NOT_CHANGED, status=400)

    def action(svc, session, person, policy, moment):
        req = _open_request(svc, session, person, policy, moment)
        reason = form.reason.data.strip()
        requests.exempt(req, reason, moment)
        events.record(session, "exempted", moment, actor=current_user.email, staff_id=person.id,
                      request_id=req.id, reason=reason)
        return f"{person.name} is exempt from this cycle: {reason}"
    return _act(staff_id, slug, action)


@bp.route("/people/<id:staff_id>/<slug>/paper", methods=["POST"])
def paper(staff_id: int, slug: str):
    svc = services()
    moment = now()
    form = PaperForm(prefix=f"{slug}-paper", today=moment.astimezone(svc.tz).date())
    if not form.validate():
        return _page(staff_id, (slug, "paper", form), problem=NOT_CHANGED, status=400)
    try:
        # The request must exist before confirm.record, which writes in its own transaction.
        with svc.db.write() as session:
            person = person_or_404(session, staff_id)
            policy = _policy(session, svc, slug)
            req = _open_request(svc, session, person, policy, moment)
            version = library.current_version(session, policy.id)
            name, request_id = person.name, req.id
    except Refused as exc:
        return _page(staff_id, problem=str(exc), status=409)
    recorded = confirm.record(svc, request_id, version, method="paper", now=moment,
                              actor=current_user.email, reason=form.note.data or None,
                              signed_on=form.signed_on.data, paper_kept=form.kept.data)
    if not recorded:
        return _page(staff_id, problem=f"{name} had already confirmed; the first record stands.",
                     status=409)
    flash(f"Paper sign-off recorded for {name}.", "ok")
    return redirect(url_for("admin.person", staff_id=staff_id), code=303)


@bp.route("/people/<id:staff_id>/<slug>/resolve", methods=["POST"])
def resolve(staff_id: int, slug: str):
    """Record how a decline was resolved: asked again, or excused this cycle."""
    form = ResolveForm(prefix=f"{slug}-resolve")
    if not form.validate():
        return _page(staff_id, (slug, "resolve", form), problem=NOT_CHANGED, status=400)

    def action(svc, session, person, policy, moment):
        cycle = session.scalars(select(Cycle).filter_by(
            policy_id=policy.id, year=policy.cycle_year(moment))).first()
        req = cycle and session.scalars(select(Request).filter_by(
            cycle_id=cycle.id, staff_id=person.id)).first()
        if req is None or req.declined_at is None:
            raise Refused(f"{person.name} has no decline of the {policy.title} waiting for a "
                          "decision (it may have been resolved already, or they confirmed); "
                          "nothing was changed.")
        declines.resolve(session, req, outcome=form.outcome.data, note=form.note.data,
                         actor=current_user.email, now=moment)
        if form.outcome.data == "reopened":
            return (f"{person.name} is asked to confirm the {policy.title} again: the scheduler's "
                    f"next run ({within(svc)}) sends what is due.")
        return f"{person.name} is excused from the {policy.title} this cycle."
    return _act(staff_id, slug, action)


def within(svc: Services) -> str:
    """When the scheduler's next run comes at the latest, in words: "within 5 minutes"."""
    seconds = svc.config.scheduler.interval_seconds
    size, unit = ((3600, "hour") if seconds >= 3600 else (60, "minute") if seconds >= 60
                  else (1, "second"))
    count = -(-seconds // size)  # rounded up: "within" must not promise too soon
    return f"within {count} {unit}{'s' if count > 1 else ''}"


def describe(event: Event) -> str:
    """One line of history in words, for the person page."""
    d = event.detail or {}
    words = {
        "staff_added": "added to the roster",
        "staff_updated": "details changed: " + ", ".join(
            f"{k} {old or '—'} → {new or '—'}"
            for k, (old, new) in (d.get("changes") or {}).items()),
        "invited": "first reminder sent",
        "reminded": "reminder sent" + (f" (follow-up {d['stage']})" if d.get("stage") else ""),
        "escalated": "named in the head teacher's digest",
        "delivery_failed": f"email not delivered: {d.get('reason', '')}",
        "confirmed": (f"confirmed ({d.get('method', 'self')}"
                      + (f", signed {_day(d['signed_on'])}" if d.get("signed_on") else "")
                      + (f", kept in {d['paper_kept']}" if d.get("paper_kept") else "") + ")"
                      + (f": {d['reason']}" if d.get("reason") else "")),
        "resend_queued": "link resent",
        "link_reissued": f"old links stopped ({d.get('revoked', 0)}), new link sent",
        "due_extended": f"due date extended to {d.get('due', '')}"
                        + (f": {d['reason']}" if d.get("reason") else ""),
        "exempted": f"exempted for this cycle: {d.get('reason', '')}",
        "asked_again": "asked to confirm again: a material change to the policy came into force",
        "declined": ("said they cannot confirm "
                     + (f"“{d['statement']}”" if d.get("statement") else "the policy")
                     + f": {d.get('reason', '')}"),
        "decline_resolved": (("asked to confirm again" if d.get("outcome") == "reopened"
                              else "excused this cycle") + f" after declining: {d.get('note', '')}"),
    }
    return words.get(event.kind, event.kind.replace("_", " "))


def _day(iso: str) -> str:
    """A date from the event log in words: "Friday 28 August 2026"."""
    try:
        return f"{dt.date.fromisoformat(iso):%A %-d %B %Y}"
    except ValueError:
        return iso
