"""The schedule in words, the coming timeline (what `signoff plan` prints), and a test email."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from types import SimpleNamespace

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import events, library, mailer, outbox, planner, timeline
from ..services import Services, services
from . import bp, now, paging

WEEKS_AHEAD = 8
PER_PAGE = 100  # names a page of one timeline line
SAMPLE_LINK = "/c/SAMPLE-this-is-a-test-email-and-this-link-does-not-work"


def in_words(svc: Services, lib: library.Library) -> list[str]:
    """The setting's schedule in sentences; then what each policy does differently."""
    s = lib.calendar.schedule
    lines = [
        f"A new cycle opens every year on {_opens(s)} at {s.send_time:%H:%M} "
        f"({lib.tz.key}); everyone in a policy's audience gets a first reminder then, and new "
        "starters on their start date.",
        f"Follow-ups go {_days(s)} days after a person's first reminder, while they have not "
        "confirmed." if s.reminder_after_days else
        "No follow-ups are sent after the first reminder.",
        f"Each reminder asks the person to confirm by the date {s.escalate_after_days} days "
        "after their first reminder; they are overdue from the next day. The head teacher "
        f"({svc.config.head_teacher.name}) gets one digest across all policies on the first day "
        f"anyone is overdue, then every {s.digest_every_days} days while anyone is.",
        f"Every scheduled email goes at {s.send_time:%H:%M} local time.",
    ]
    if s.working_days_only:
        lines.append(f"A send or a date to confirm by that falls on a weekend or a public "
                     f"holiday ({s.holidays}) moves to the next working day.")
    if lib.calendar.closures:
        lines.append("Nothing scheduled goes while the setting is closed: "
                     + "; ".join(f"{c.name} ({_span(c)})" for c in lib.calendar.closures) + ".")
    lines.append(f"The scheduler checks every {svc.config.scheduler.interval_seconds} seconds.")
    return lines


def policy_in_words(entry: library.Entry) -> str:
    """One policy's audience and how its schedule differs from the setting's."""
    who = ("for everyone" if not entry.audience else
           "for the groups " + ", ".join(entry.audience))
    s, own = entry.schedule, entry.overrides
    parts = [who]
    if "annual_open" in own or "send_time" in own:
        parts.append(f"opens every {_opens(s)} at {s.send_time:%H:%M}")
    if "reminder_after_days" in own:
        parts.append(f"follow-ups {_days(s)} days after the first reminder"
                     if s.reminder_after_days else "no follow-ups")
    if "escalate_after_days" in own:
        parts.append(f"confirm within {s.escalate_after_days} days")
    if "working_days_only" in own or "holidays" in own:
        parts.append("working days only" if s.working_days_only else "any day of the week")
    if entry.state == "paused":
        parts.append("paused: nothing is sent")
    return "; ".join(parts) + "."


def _opens(s) -> str:
    return f"{dt.date(2024, *s.annual_open):%-d %B}"  # a leap year, so 29 Feb can be shown


def _days(s) -> str:
    return ", ".join(str(d) for d in s.reminder_after_days)


def _span(c) -> str:
    if c.first == c.last:
        return f"{c.first:%a %-d %b %Y}"
    return f"{c.first:%a %-d %b} to {c.last:%a %-d %b %Y}"


@bp.route("/schedule")
def schedule():
    svc = services()
    moment = now()
    end = moment + dt.timedelta(weeks=WEEKS_AHEAD)
    with svc.db.read() as session:
        lib = svc.library(session)
        coming = timeline.batches(svc, session, moment, end, lib)
    return render_template("admin/schedule.html", active="schedule", words=in_words(svc, lib),
                           policies=[(e, policy_in_words(e)) for e in lib.policies],
                           batches=coming, titles=titles(lib), tz=svc.tz, end=end,
                           weeks=WEEKS_AHEAD, sends=sum(b.count for b in coming))


def titles(lib: library.Library) -> dict[str, str]:
    """Each policy's title by its slug, and the digest's "policy"."""
    return {**{e.slug: e.title for e in lib.policies}, "all": "all policies"}


@bp.route("/schedule/who")
def schedule_who():
    """The people one line of the timeline sends to (the timeline counts them): a policy's sends
    of one kind at one moment, a hundred names a page."""
    svc = services()
    moment = now()
    try:
        at = dt.datetime.fromisoformat(request.args.get("at", ""))
    except ValueError:
        abort(404)
    if at.tzinfo is None or not moment <= at <= moment + dt.timedelta(days=400):
        abort(404)
    what = request.args.get("what", "")
    with svc.db.read() as session:
        lib = svc.library(session)
        entry = lib.by_slug(request.args.get("policy", ""))
        if entry is None or not entry.active:
            abort(404)
        found = [b for b in timeline.batches(svc, session, moment, at, lib, names=True,
                                             policy_id=entry.id)
                 if b.when == at and b.what == what]
    people = sorted({who for b in found for who in b.who})
    page, pages = paging(len(people), PER_PAGE)
    return render_template("admin/schedule_who.html", active="schedule", entry=entry, at=at,
                           what=what, people=people[(page - 1) * PER_PAGE:page * PER_PAGE],
                           total=len(people), page=page, pages=pages, tz=svc.tz,
                           why=sorted({b.why for b in found}))


@bp.route("/schedule/test-email", methods=["POST"])
def test_email():
    """Send a sample reminder straight to the signed-in admin, to check the mail settings."""
    svc = services()
    moment = now()
    with svc.db.read() as session:
        entries = svc.library(session).policies
    if not entries:
        flash("No policy is loaded yet: run `signoff init` first.", "problem")
        return redirect(url_for("admin.schedule"), code=303)
    policy = entries[0]
    item = {"policy": policy, "stage": planner.REMINDER,
            "stage_label": planner.stage_label(planner.REMINDER),
            "due_date": planner.due_date(moment, policy.calendar), "first_sent": None,
            "policy_note": policy.reminder_note, "link": svc.config.setting.base_url + SAMPLE_LINK}
    ctx = outbox.personal_context(
        SimpleNamespace(name="Sample Person", first_name="", email=current_user.email), [item])
    message = mailer.make_message("reminder", "Sample Person", current_user.email, ctx)
    message.subject = f"[SAMPLE - test email] {message.subject}"
    try:
        with mailer.connect() as conn:
            conn.send(message)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        mail = svc.config.mail
        why = mailer.refusal(exc).reason[:300]
        flash(f"The test email was not sent: the mail server {mail.server}:{mail.port} said or did "
              f"this: {why}. Check the [mail] settings and that the server is running.", "problem")
        return redirect(url_for("admin.schedule"), code=303)
    with svc.db.write() as session:
        events.record(session, "test_email_sent", moment, actor=current_user.email,
                      to=current_user.email)
    flash(f"A sample reminder was sent to {current_user.email}. Its link is marked as a sample and "
          "does not work.", "ok")
    return redirect(url_for("admin.schedule"), code=303)
