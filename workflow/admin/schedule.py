"""The schedule in words, the coming timeline (what `signoff plan` prints), and a test email."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from types import SimpleNamespace

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from .. import events, mailer, planner, policies, timeline
from ..services import Services, services
from . import bp, now

WEEKS_AHEAD = 8
SAMPLE_LINK = "/c/SAMPLE-this-is-a-test-email-and-this-link-does-not-work"


def in_words(svc: Services) -> list[str]:
    s = svc.config.schedule
    cal = svc.calendar
    opens = dt.date(2024, *s.annual_open)  # a leap year, so 29 Feb can be shown
    days = ", ".join(str(d) for d in s.reminder_after_days)
    lines = [
        f"A new cycle opens every year on {opens:%-d %B} at {s.send_time:%H:%M} "
        f"({cal.tz.key}); everyone on the roster gets a first reminder then, and new starters "
        "on their start date.",
        f"Follow-ups go {days} days after a person's first reminder, while they have not confirmed."
        if s.reminder_after_days else "No follow-ups are sent after the first reminder.",
        f"Each reminder asks the person to confirm by the date {s.escalate_after_days} days "
        "after their first reminder; they are overdue from the next day. The head teacher "
        f"({svc.config.head_teacher.name}) gets a digest on the first day anyone is overdue, "
        f"then every {s.digest_every_days} days while anyone is.",
        f"Every scheduled email goes at {s.send_time:%H:%M} local time.",
    ]
    if s.working_days_only:
        lines.append(f"A send or a date to confirm by that falls on a weekend or a public "
                     f"holiday ({s.holidays}) moves to the next working day.")
    lines.append(f"The scheduler checks every {svc.config.scheduler.interval_seconds} seconds.")
    return lines


@bp.route("/schedule")
def schedule():
    svc = services()
    moment = now()
    end = moment + dt.timedelta(weeks=WEEKS_AHEAD)
    with svc.db.read() as session:
        entries = timeline.entries(svc, session, moment, end)
    return render_template("admin/schedule.html", active="schedule", words=in_words(svc),
                           entries=entries, tz=svc.calendar.tz, end=end, weeks=WEEKS_AHEAD)


@bp.route("/schedule/test-email", methods=["POST"])
def test_email():
    """Send a sample reminder straight to the signed-in admin, to check the mail settings."""
    svc = services()
    moment = now()
    cal = svc.calendar
    with svc.db.read() as session:
        configured = policies.configured(session, svc.config)
        if not configured:
            flash("No policy is loaded yet: run `signoff init` first.", "problem")
            return redirect(url_for("admin.schedule"), code=303)
        policy = configured[0]
    note = next((p.reminder_note for p in svc.config.policies if p.slug == policy.slug), None)
    ctx = {"person": SimpleNamespace(name="Sample Person", email=current_user.email),
           "policy": policy, "stage": planner.REMINDER,
           "stage_label": planner.stage_label(planner.REMINDER),
           "due_date": planner.due_date(moment, cal), "first_sent": None,
           "policy_note": note, "link": svc.config.setting.base_url + SAMPLE_LINK}
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
