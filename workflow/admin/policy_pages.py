"""The policy library in the console: add a policy, edit any of it, pause, resume or retire it; add
and remove the setting's closures. Every change is previewed first, as the coming emails it makes
("saving this sends 48 first reminders on Tue 1 Sep 08:00"), and saved only as previewed; each is
an event naming the admin. What is saved acts at once: every process reads the library afresh."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import config as config_mod
from .. import events, library, policies, requests, reviews, roster, standing, timeline
from ..errors import ConfigError
from ..library import Library
from ..policies import setting_id
from ..models import (POLICY_STATES, Closure, Cycle, Policy, PolicyVersion, Request, Staff,
                      StaffGroup)
from ..services import Services, services
from . import bp, now
from .forms import ApprovalForm, ClosureForm, PolicyForm, RemoveForm, ReviewForm, StateForm
from .schedule import policy_in_words

AHEAD = dt.timedelta(days=366)  # a preview looks a year ahead: every policy's next opening
SHOWN = 8  # lines of a preview's changes, before "and N more"
UPLOAD_MAX = 500_000
# The schedule keys the form offers, each as its field; digest_every_days and holidays are the
# setting's (one digest for all policies).
FORM_KEYS = ("annual_open", "send_time", "reminder_after_days", "escalate_after_days",
             "working_days_only")


@dataclass(frozen=True)
class Draft:
    """A policy as the form describes it."""

    title: str
    text: str
    statements: tuple[str, ...]
    reminder_note: str | None
    audience: tuple[str, ...]
    overrides: dict
    note: str | None = None  # what a new text changes, in the proposer's words
    review_every_months: int = 12
    change: str | None = None  # a new text's: material or minor

    def fingerprint(self) -> str:
        """What was previewed: saving needs the same."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True,
                                         default=str).encode()).hexdigest()


# --- the list ------------------------------------------------------------------------------------

@bp.route("/policies")
def policy_list():
    svc = services()
    moment = now()
    with svc.db.read() as session:
        lib = svc.library(session)
        rows = list(session.scalars(select(Policy).where(Policy.setting_id == lib.setting_id)
                                    .order_by(Policy.position, Policy.id)))
        versions = {p.id: library.current_version(session, p.id) for p in rows}
        tallies = standing.tallies(lib, session, moment)
    shown = [(p, lib.get(p.id), versions[p.id], tallies.get(p.id, standing.Tally()),
              policy_in_words(lib.get(p.id)) if lib.get(p.id) else "") for p in rows]
    return render_template("admin/policies.html", active="policies", rows=shown, tz=svc.tz,
                           state_form=StateForm())


# --- add and edit ----------------------------------------------------------------------------

@bp.route("/policies/new", methods=["GET", "POST"])
def policy_new():
    return _edit(None)


@bp.route("/policies/<id:policy_id>", methods=["GET", "POST"])
def policy_edit(policy_id: int):
    return _edit(policy_id)


def _edit(policy_id: int | None):
    svc = services()
    moment = now()
    with svc.db.read() as session:
        lib = svc.library(session)
        stored = None
        if policy_id is not None:
            stored = _policy_or_404(session, lib, policy_id)
            # The box shows the newest text: a proposal waiting for approval, if there is one.
            version = library.newest_version(session, policy_id)
        groups = _known_groups(session)
        if request.method != "POST":
            form = PolicyForm(formdata=None)
            if stored is not None:
                _fill(form, stored, version)
            return _form_page(form, stored, lib, groups, versions=_versions(session, stored),
                              session=session)
        form = PolicyForm()
        versions = _versions(session, stored)
        draft = _draft(form, lib) if form.validate() else None
        if draft is not None and stored is not None and _new_text(version, draft):
            if draft.change not in library.CHANGES:
                form.change.errors.append("Say whether the new text is a material or a minor "
                                          "change.")
            if not draft.note:
                form.note.errors.append("Say what the new text changes: staff are shown it.")
            if form.change.errors or form.note.errors:
                draft = None
        if draft is None:
            return _form_page(form, stored, lib, groups, problem="Nothing was saved: please fix "
                              "the problems shown below.", versions=versions,
                              session=session), 400
        preview = _policy_preview(svc, session, lib, stored, draft, moment, groups)
        if stored is not None and _new_text(version, draft):
            preview.notes.insert(0, "The new text is proposed, not sent: staff keep reading "
                                    "the text in force until it is approved (record the "
                                    "approval on this page once it is saved).")
        if form.action.data != "save" or form.previewed.data != draft.fingerprint():
            form.previewed.data = draft.fingerprint()
            return _form_page(form, stored, lib, groups, preview=preview, versions=versions,
                              session=session)
    with svc.db.write() as session:
        saved, proposed = _save(session, lib, policy_id, draft, moment)
        requests.after_change(session, svc.library(session), moment, policy_ids=[saved])
    flash(f"Saved the {draft.title}. {_done(preview.headline)}"
          + (" Its new text is proposed: it reaches staff once approved." if proposed else ""),
          "ok")
    return redirect(url_for("admin.policy_edit", policy_id=saved), code=303)


@bp.route("/policies/<id:policy_id>/review", methods=["POST"])
def policy_review(policy_id: int):
    """Start an early review (its date today) or set the review date by hand, saying why."""
    svc = services()
    moment = now()
    form = ReviewForm()
    with svc.db.write() as session:
        lib = svc.library(session)
        policy = _policy_or_404(session, lib, policy_id)
        if not form.validate():
            return _shown_again(session, lib, policy, "The review date was not changed",
                                review_form=form)
        reviews.set_review(session, policy, on=form.on.data, reason=form.reason.data,
                           actor=current_user.email, now=moment)
        title = policy.title
    flash(f"The {title}'s review is now due on {form.on.data:%A %-d %B %Y}. It ends with the "
          "governors' approval, recorded on this page.", "ok")
    return redirect(url_for("admin.policy_edit", policy_id=policy_id) + "#review", code=303)


def _policy_or_404(session: Session, lib: Library, policy_id: int) -> Policy:
    policy = session.get(Policy, policy_id)
    if policy is None or policy.setting_id != lib.setting_id:
        abort(404)
    return policy


def _shown_again(session: Session, lib: Library, policy: Policy, nothing_done: str, **forms):
    """The policy's page again, with the form that was posted (`forms`) and its problems."""
    page = PolicyForm(formdata=None)
    _fill(page, policy, library.newest_version(session, policy.id))
    return _form_page(page, policy, lib, _known_groups(session),
                      problem=f"{nothing_done}: please fix the problems shown below.",
                      versions=_versions(session, policy), session=session, **forms), 400


def _new_text(version, draft: Draft) -> bool:
    return version is None or version.sha256 != policies.sha256(draft.text) or \
        list(version.statements) != list(draft.statements)


def _versions(session: Session, policy: Policy | None) -> list:
    """The policy's versions, newest first, each with its approvals and what it is now."""
    if policy is None:
        return []
    found = list(session.scalars(select(PolicyVersion).where(PolicyVersion.policy_id == policy.id)
                                 .order_by(PolicyVersion.id.desc())))
    in_force = next((v for v in found if v.in_force_at is not None), None)
    out = []
    for v in found:
        _ = v.approvals
        state = ("in force" if v is in_force else "proposed: waiting for approval"
                 if v is found[0] and v.in_force_at is None else "superseded"
                 if v.in_force_at is not None else "never approved")
        out.append((v, state))
    return out


def _form_page(form: PolicyForm, stored: Policy | None, lib: Library, groups: list[str],
               preview=None, problem: str | None = None, versions: list | None = None,
               approval: ApprovalForm | None = None, session: Session | None = None,
               review_form: ReviewForm | None = None):
    review = next((r for r in reviews.reviews(session, lib) if r.policy_id == stored.id),
                  None) if stored is not None and session is not None else None
    return render_template("admin/policy_form.html", active="policies", form=form,
                           policy=stored, preview=preview, problem=problem, groups=groups,
                           base=lib.calendar.schedule, versions=versions or [],
                           approval=approval or ApprovalForm(formdata=None), tz=lib.tz,
                           review=review, review_form=review_form or ReviewForm(
                               formdata=None, data={"on": lib.calendar.local_date(now())}))


def _fill(form: PolicyForm, policy: Policy, version) -> None:
    form.title.data = policy.title
    form.text.data = version.content if version else ""
    form.statements.data = "\n".join(version.statements) if version else ""
    form.reminder_note.data = policy.reminder_note or ""
    form.review_every_months.data = str(policy.review_every_months or 12)
    form.audience.data = "; ".join(policy.audience)
    own = policy.schedule or {}
    for key in ("annual_open", "send_time"):
        getattr(form, key).data = own.get(key, "")
    if "reminder_after_days" in own:
        days = own["reminder_after_days"]
        form.reminder_after_days.data = ", ".join(str(d) for d in days) if days else "none"
    if "escalate_after_days" in own:
        form.escalate_after_days.data = str(own["escalate_after_days"])
    if "working_days_only" in own:
        form.working_days_only.data = "yes" if own["working_days_only"] else "no"


def _draft(form: PolicyForm, lib: Library) -> Draft | None:
    """The form as a Draft, or None after putting each problem on its field."""
    text = form.text.data or ""
    upload = form.upload.data
    if upload is not None and getattr(upload, "filename", ""):
        raw = upload.read(UPLOAD_MAX + 1)
        if len(raw) > UPLOAD_MAX:
            form.upload.errors.append("That file is over 500 KB: is it the policy's text?")
        else:
            try:
                text = policies.text_of_file(upload.filename, raw)
                form.text.data = text  # shown in the box, so the save carries it
            except policies.UnreadableText as exc:
                form.upload.errors.append(str(exc))
    text = text.replace("\r\n", "\n").replace("\x00", "")
    if not text.strip() and not form.upload.errors:
        form.text.errors.append("Give the policy's text: type it in the box or upload a file.")
    statements = tuple(dict.fromkeys(
        roster.clean_text(line) for line in (form.statements.data or "").splitlines()
        if line.strip()))
    if not statements:
        form.statements.errors.append("Give at least one statement to tick, one a line.")
    elif any(len(s) > 500 for s in statements):
        form.statements.errors.append("Keep each statement under 500 characters.")
    audience = roster.groups_of(form.audience.data or "")
    if any(len(g) > roster.GROUP_MAX for g in audience):
        form.audience.errors.append(f"Keep each group's name under {roster.GROUP_MAX} characters.")
    overrides = _overrides(form, lib)
    months = (form.review_every_months.data or "12").strip()
    low, high = config_mod.REVIEW_MONTHS
    if not months.isdigit() or not low <= int(months) <= high:
        form.review_every_months.errors.append(f"Give a number of months from {low} to {high}.")
    if any(f.errors for f in form):
        return None
    return Draft(title=roster.clean_text(form.title.data), text=text, statements=statements,
                 reminder_note=form.reminder_note.data or None, audience=audience,
                 overrides=overrides, note=form.note.data or None,
                 review_every_months=int(months), change=form.change.data or None)


def _overrides(form: PolicyForm, lib: Library) -> dict:
    """The schedule keys the form sets, as [schedule] values, each checked as the config's are."""
    values: dict = {}
    raw = {key: (getattr(form, key).data or "").strip() for key in FORM_KEYS}
    for key in ("annual_open", "send_time"):
        if raw[key]:
            values[key] = raw[key]
    if raw["reminder_after_days"]:
        if raw["reminder_after_days"].lower() == "none":
            values["reminder_after_days"] = []
        else:
            parts = [p.strip() for p in re.split(r"[,;\s]+", raw["reminder_after_days"]) if p]
            if all(p.isdigit() for p in parts):
                values["reminder_after_days"] = [int(p) for p in parts]
            else:
                form.reminder_after_days.errors.append(
                    "Give whole numbers of days separated by commas, e.g. 7, 14; or none.")
    if raw["escalate_after_days"]:
        if raw["escalate_after_days"].isdigit():
            values["escalate_after_days"] = int(raw["escalate_after_days"])
        else:
            form.escalate_after_days.errors.append("Give a whole number of days, e.g. 21.")
    if raw["working_days_only"] in ("yes", "no"):
        values["working_days_only"] = raw["working_days_only"] == "yes"
    for key, value in values.items():
        try:
            config_mod.parse_schedule({key: value}, "the form", "schedule", lib.calendar.schedule)
        except ConfigError as exc:
            getattr(form, key).errors.append(str(exc).split(f"{key}: ", 1)[-1].capitalize())
    return values


def _slug(session: Session, setting_id: int, title: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:90] or "policy"
    taken = set(session.scalars(select(Policy.slug).where(Policy.setting_id == setting_id)))
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _save(session: Session, lib: Library, policy_id: int | None, draft: Draft,
          moment: dt.datetime) -> int:
    actor = current_user.email
    if policy_id is None:
        policy = library.add_policy(
            session, lib.setting_id, slug=_slug(session, lib.setting_id, draft.title),
            title=draft.title, text=draft.text, statements=list(draft.statements),
            schedule=draft.overrides, reminder_note=draft.reminder_note, audience=draft.audience,
            review_every_months=draft.review_every_months, actor=actor, now=moment)
        return policy.id, False
    policy = session.get(Policy, policy_id)
    before = library.newest_version(session, policy_id)
    changes = {}
    for attr, value in (("title", draft.title), ("reminder_note", draft.reminder_note),
                        ("audience", draft.audience), ("schedule", draft.overrides),
                        ("review_every_months", draft.review_every_months)):
        old = getattr(policy, attr)
        if (list(old) if attr == "audience" else old) != (list(value) if attr == "audience"
                                                          else value):
            changes[attr] = [roster.logged(old), roster.logged(value)]
            setattr(policy, attr, value)
    version = library.add_version(session, policy, draft.text, list(draft.statements), moment,
                                  actor=actor, note=draft.note, change=draft.change)
    if version is not None:
        changes["proposed"] = [before.sha256 if before else None, version.sha256]
        if before is None or list(before.statements) != list(draft.statements):
            changes["statements"] = [list(before.statements) if before else None,
                                     list(draft.statements)]
    if changes:
        events.record(session, "policy_changed", moment, actor=actor, policy=policy.slug,
                      changes=changes)
    return policy.id, version is not None


@bp.route("/policies/<id:policy_id>/approve", methods=["POST"])
def policy_approve(policy_id: int):
    """Record one approval of the policy's newest version; the first puts a proposal in force."""
    svc = services()
    moment = now()
    form = ApprovalForm(today=moment.astimezone(svc.tz).date())
    with svc.db.write() as session:
        lib = svc.library(session)
        policy = _policy_or_404(session, lib, policy_id)
        version = library.newest_version(session, policy_id)
        if not form.validate() or version is None:
            return _shown_again(session, lib, policy, "No approval was recorded", approval=form)
        came, asked = library.approve(session, version, name=form.name.data,
                                      role=form.role.data, on=form.approved_on.data,
                                      minute=form.minute.data or None,
                                      actor=current_user.email, now=moment)
        title, short = policy.title, version.sha256[:12]
    flash(f"Recorded the approval of the {title} ({short})."
          + (" This text is now in force: staff are shown it from now on." if came else "")
          + (f" A material change: {asked} {'person' if asked == 1 else 'people'} who confirmed "
             "the older text this cycle are asked again with the scheduler's next run."
             if asked else ""), "ok")
    return redirect(url_for("admin.policy_edit", policy_id=policy_id), code=303)


# --- pause, resume, retire ---------------------------------------------------------------------

STATE_WORDS = {"active": ("resumed", "is asked for and chased again"),
               "paused": ("paused", "is paused: nothing about it is sent until it is resumed"),
               "retired": ("retired", "is retired: it is no longer asked for or shown, and its "
                                      "evidence is kept")}


@bp.route("/policies/<id:policy_id>/state", methods=["POST"])
def policy_state(policy_id: int):
    svc = services()
    form = StateForm()
    wanted = form.state.data if form.validate() else None
    if wanted not in POLICY_STATES:
        abort(400)
    moment = now()
    with svc.db.write() as session:
        policy = session.get(Policy, policy_id)
        if policy is None or policy.setting_id != setting_id(session):
            abort(404)
        if policy.state == wanted:
            flash(f"The {policy.title} was already {wanted}; nothing changed.", "ok")
            return redirect(url_for("admin.policy_list"), code=303)
        before, policy.state = policy.state, wanted
        kind, words = STATE_WORDS[wanted]
        events.record(session, f"policy_{kind}", moment, actor=current_user.email,
                      policy=policy.slug, state=[before, wanted])
        title = policy.title
    flash(f"The {title} {words}.", "ok")
    return redirect(url_for("admin.policy_list"), code=303)


# --- closures ------------------------------------------------------------------------------------

@bp.route("/closures", methods=["GET", "POST"])
def closures():
    svc = services()
    moment = now()
    form = ClosureForm() if request.method == "POST" else ClosureForm(formdata=None)
    preview = None
    with svc.db.read() as session:
        lib = svc.library(session)
        stored = _closures(session, lib)
        if request.method == "POST":
            if not form.validate():
                return _closures_page(form, stored, problem="Nothing was saved: please fix the "
                                      "problems shown below."), 400
            added = config_mod.Closure(form.name.data, form.first.data, form.last.data)
            after = lib.with_closures((*lib.calendar.closures, added))
            preview = _preview(svc, session, lib, after, moment)
            fingerprint = hashlib.sha256(repr(added).encode()).hexdigest()
    if preview is None:
        return _closures_page(form, stored)
    if form.action.data != "save" or form.previewed.data != fingerprint:
        form.previewed.data = fingerprint
        return _closures_page(form, stored, preview=preview)
    with svc.db.write() as session:
        session.add(Closure(setting_id=lib.setting_id, name=added.name, first=added.first,
                            last=added.last, created_at=moment))
        session.flush()
        requests.after_change(session, svc.library(session), moment)
        events.record(session, "closure_added", moment, actor=current_user.email,
                      name=added.name, first=added.first.isoformat(), last=added.last.isoformat())
    flash(f"Added the closure {added.name}. {_done(preview.headline)}", "ok")
    return redirect(url_for("admin.closures"), code=303)


@bp.route("/closures/<id:closure_id>/remove", methods=["POST"])
def closure_remove(closure_id: int):
    svc = services()
    moment = now()
    form = RemoveForm()
    with svc.db.read() as session:
        lib = svc.library(session)
        closure = session.get(Closure, closure_id)
        if closure is None or closure.setting_id != lib.setting_id:
            abort(404)
        name = closure.name
        if not form.validate() or form.action.data != "save":
            kept = tuple(config_mod.Closure(c.name, c.first, c.last)
                         for c in _closures(session, lib) if c.id != closure_id)
            preview = _preview(svc, session, lib, lib.with_closures(kept), moment)
            return _closures_page(ClosureForm(formdata=None), _closures(session, lib),
                                  preview=preview, removing=closure)
    with svc.db.write() as session:
        closure = session.get(Closure, closure_id)
        if closure is not None:
            session.delete(closure)
            events.record(session, "closure_removed", moment, actor=current_user.email,
                          name=closure.name, first=closure.first.isoformat(),
                          last=closure.last.isoformat())
            session.flush()
            requests.after_change(session, svc.library(session), moment)
    flash(f"Removed the closure {name}.", "ok")
    return redirect(url_for("admin.closures"), code=303)


def _closures(session: Session, lib: Library) -> list[Closure]:
    return list(session.scalars(select(Closure).where(Closure.setting_id == lib.setting_id)
                                .order_by(Closure.first, Closure.id)))


def _closures_page(form, stored, preview=None, problem=None, removing=None):
    return render_template("admin/closures.html", active="schedule", form=form, closures=stored,
                           preview=preview, problem=problem, removing=removing,
                           remove_form=RemoveForm(formdata=None))


# --- previews --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preview:
    """What a change does to the coming year's emails, in lines an office manager can check."""

    headline: str
    added: list[str]
    removed: list[str]
    more: int
    notes: list[str]


def _policy_preview(svc: Services, session: Session, lib: Library, stored: Policy | None,
                    draft: Draft, moment: dt.datetime, groups: list[str]) -> Preview:
    """The draft's coming emails against the stored policy's (none, for a new one)."""
    base = lib.calendar
    row = stored or Policy(id=None, slug="new", title=draft.title, state="active")
    entry = dataclasses.replace(library.entry_of(row, base, draft.overrides, draft.audience),
                                title=draft.title, state=stored.state if stored else "active")
    current = lib.get(stored.id) if stored is not None else None
    before = Library(lib.setting_id, base, (current,) if current else ())
    after = Library(lib.setting_id, base, (entry,))
    notes = _audience_notes(session, lib, current, draft.audience, moment, groups)
    if entry.state == "paused":
        notes.append("This policy is paused: nothing about it is sent until it is resumed.")
    others = {e.schedule.send_time for e in lib.active if e.id != entry.id}
    if others - {entry.schedule.send_time}:
        notes.append(f"It sends at {entry.schedule.send_time:%H:%M}, other policies at "
                     f"{', '.join(sorted(f'{t:%H:%M}' for t in others))}: what it sends to "
                     "someone on a day they have already had an email waits until their next "
                     "day's, one email a day.")
    return _preview(svc, session, before, after, moment, notes, digests=False)


def _audience_notes(session: Session, lib: Library, entry: library.Entry | None,
                    audience: tuple[str, ...], moment: dt.datetime,
                    groups: list[str]) -> list[str]:
    """Who the audience is, groups nobody is in (a typing slip?), and who stops being asked."""
    notes = []
    active = select(func.count()).select_from(Staff).where(Staff.active,
                                                           Staff.setting_id == lib.setting_id)
    count = session.scalar(active.where(standing.in_audience(None, audience)))
    notes.append(f"It is for {'everyone' if not audience else ', '.join(audience)}: "
                 f"{count} active {'person' if count == 1 else 'people'} on the roster.")
    known = {g.lower() for g in groups}
    for group in audience:
        if group.lower() not in known:
            notes.append(f"Nobody on the roster is in the group “{group}” yet.")
    if entry is not None:
        asked = (select(func.count()).select_from(Request).join(Staff, Staff.id == Request.staff_id)
                 .join(Cycle, Cycle.id == Request.cycle_id)
                 .where(Cycle.policy_id == entry.id,
                        Cycle.year == entry.cycle_year(moment),
                        Request.closed_at.is_(None), ~standing.in_audience(None, audience)))
        leaving = session.scalar(asked)
        if leaving:
            notes.append(f"{leaving} {'person' if leaving == 1 else 'people'} asked this cycle "
                         "would no longer be asked: their request is closed as no longer "
                         "applying, and kept in the evidence.")
    return notes


def _preview(svc: Services, session: Session, before: Library, after: Library,
             moment: dt.datetime, notes: list[str] | None = None, digests: bool = True) -> Preview:
    """The coming year's emails with `after` against `before`: counts per moment, policy and
    kind, and the differences as sentences."""
    end = moment + AHEAD

    def counts(lib: Library) -> Counter:
        found: Counter = Counter()
        for b in timeline.batches(svc, session, moment, end, lib):
            if digests or b.what != "head-teacher digest":
                found[b.when, b.policy, b.what] += b.count
        return found

    old, new = counts(before), counts(after)
    titles = {e.slug: e.title for e in (*before.policies, *after.policies)}
    tz = svc.tz

    def line(key, n: int) -> str:
        when, slug, what = key
        return (f"{_many(n, what)} on {when.astimezone(tz):%a %-d %b %Y at %H:%M}"
                + (f" ({titles.get(slug, slug)})" if slug in titles else ""))

    added = sorted((k, n - old.get(k, 0)) for k, n in new.items() if n > old.get(k, 0))
    removed = sorted((k, n - new.get(k, 0)) for k, n in old.items() if n > new.get(k, 0))
    if not added and not removed:
        headline = "This changes none of the coming year's emails."
    elif added:
        headline = "Saving this sends " + line(*added[0]) + (
            f", and makes {len(added) + len(removed) - 1} other changes to the coming emails."
            if len(added) + len(removed) > 1 else ".")
    else:
        headline = "Saving this no longer sends " + line(*removed[0]) + "."
    more = max(0, len(added) - SHOWN) + max(0, len(removed) - SHOWN)
    return Preview(headline=headline, added=[line(k, n) for k, n in added[:SHOWN]],
                   removed=[line(k, n) for k, n in removed[:SHOWN]], more=more,
                   notes=notes or [])


def _done(headline: str) -> str:
    """A preview's headline once the change is saved: "Saving this sends …" becomes "This sends
    …"."""
    return headline.replace("Saving this ", "This ", 1)


def _many(n: int, what: str) -> str:
    plural = {"first reminder": "first reminders", "head-teacher digest": "head-teacher digests"}
    if n == 1:
        return f"1 {what}"
    if what in plural:
        return f"{n} {plural[what]}"
    return f"{n} {what.replace('follow-up', 'follow-ups (number')})"


def _known_groups(session: Session) -> list[str]:
    """Every group someone on the roster is in, as first written."""
    names: dict[str, str] = {}
    for name in session.scalars(select(StaffGroup.name).distinct()
                                .join(Staff, Staff.id == StaffGroup.staff_id)
                                .where(Staff.setting_id == setting_id(session))
                                .order_by(StaffGroup.name)):
        names.setdefault(name.lower(), name)
    return sorted(names.values(), key=str.lower)
