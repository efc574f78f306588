"""The dashboard: have they all signed? Counts per policy, the next send, the scheduler's health and
delivery failures, at a glance."""

from __future__ import annotations

import datetime as dt

from flask import render_template
from sqlalchemy import func, select

from .. import outbox, reviews, timeline
from ..services import services
from ..models import Cycle, Decline, Outbox, Policy, Request, Staff, TickRun
from ..standing import counted_overviews, tallies_and_states
from . import bp, now, schedule

STALE_AFTER_INTERVALS = 3
RECENT_FAILURES = 20
NEXT_SEND_WITHIN = dt.timedelta(days=366)


@bp.route("/")
def dashboard():
    svc = services()
    moment = now()
    tz = svc.tz
    with svc.db.read() as session:
        lib = svc.library(session)
        counts, states = tallies_and_states(lib, session, moment)
        cycles = counted_overviews(lib, session, moment, counts)
        # A year ahead always reaches the next cycle's first reminders, so there is a next send
        # whenever anyone is on the roster.
        first = timeline.batches(svc, session, moment, moment + NEXT_SEND_WITHIN, lib,
                                 first=True, states=states)
        # Under the mail provider's limits: when what waits now, and the next send's emails,
        # will all have gone.
        _, waiting = outbox.waiting(svc, session, moment)
        next_held = None
        if first:
            # A person's sends of several policies at one time are one email: counted per
            # policy, the emails are at most this many.
            count = sum(b.count for b in first)
            next_held = next((line for _, line in timeline.held_back(
                svc, session, moment, [(first[0].when, count)])), None)
            if next_held and len({b.policy for b in first}) > 1:
                next_held = "up to " + next_held
        # The declines waiting for a decision are few: found first by themselves, so that the
        # database need not walk the staff to find none (58 ms at 50,000 on SQLite).
        waiting_ids = list(session.scalars(select(Decline.id)
                                           .where(Decline.resolved_at.is_(None))))
        declined = list(session.execute(
            select(Decline, Staff, Policy.title)
            .join(Request, Request.id == Decline.request_id)
            .join(Staff, Staff.id == Request.staff_id).join(Cycle, Cycle.id == Request.cycle_id)
            .join(Policy, Policy.id == Cycle.policy_id)
            .where(Decline.id.in_(waiting_ids), Staff.setting_id == lib.setting_id)
            .order_by(Decline.declined_at))) if waiting_ids else []
        declined_count, declined = len(declined), declined[:RECENT_FAILURES]
        reviews_due = reviews.coming(reviews.reviews(session, lib),
                                     lib.calendar.local_date(moment))
        last_tick = session.scalars(select(TickRun).order_by(TickRun.started_at.desc())
                                    .limit(1)).first()
        failed = (Outbox.status.in_(("failed", "retrying")), outbox.of_setting(lib.setting_id))
        failures = list(session.scalars(
            select(Outbox).where(*failed).order_by(Outbox.id.desc()).limit(RECENT_FAILURES)))
        failure_count = session.scalar(select(func.count()).select_from(Outbox).where(*failed))
    interval = dt.timedelta(seconds=svc.config.scheduler.interval_seconds)
    stale = last_tick is None or moment - last_tick.started_at > STALE_AFTER_INTERVALS * interval
    next_send = first[0] if first else None
    titles = schedule.titles(lib)
    days_to_next = None
    if next_send is not None:
        cal = lib.calendar
        days_to_next = (cal.local_date(next_send.when) - cal.local_date(moment)).days
    return render_template("admin/dashboard.html", active="dashboard", cycles=cycles,
                           next_send=next_send, days_to_next=days_to_next, last_tick=last_tick,
                           stale=stale, interval=interval, failures=failures, first=first,
                           titles=titles,
                           failure_count=failure_count, tz=tz, waiting=waiting,
                           next_held=next_held, declined=declined,
                           declined_count=declined_count, reviews_due=reviews_due,
                           today=lib.calendar.local_date(moment))
