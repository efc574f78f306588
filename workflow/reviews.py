"""Each policy's review (its §7, "Monitoring and review"): due `review_every_months` after the latest
approval of the text in force (or, with none recorded, after that text came into force), unless
the review date was set by hand or brought forward by an early review, which record why and who.
A new approval, which concludes a review, clears that. The head teacher is reminded four weeks
before and on the day, one email each; the dashboard lists the reviews due and overdue."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from dateutil.relativedelta import relativedelta
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from . import events, outbox
from .library import Library
from .models import Approval, Policy, PolicyVersion
from .services import Services

NOTICE = dt.timedelta(days=28)  # the head teacher's first reminder: four weeks before


@dataclass(frozen=True)
class Review:
    policy_id: int
    title: str
    due: dt.date
    why: str  # how the date was reached, in words
    reason: str | None = None  # an early review's (or a date set by hand): why
    set_by: str | None = None

    def soon_from(self) -> dt.date:
        return self.due - NOTICE


_in_force = aliased(PolicyVersion)
# Each policy in use with the version in force (library.IN_FORCE) and its latest approval: one
# statement, whatever the number of policies.
_REVIEWS = (select(Policy.id, Policy.title, Policy.review_every_months, Policy.review_on,
                   Policy.review_reason, Policy.review_set_by, PolicyVersion.in_force_at,
                   func.max(Approval.approved_on))
            .select_from(Policy)
            .join(PolicyVersion, PolicyVersion.id == select(func.max(_in_force.id))
                  .where(_in_force.policy_id == Policy.id, _in_force.in_force_at.is_not(None))
                  .scalar_subquery())
            .outerjoin(Approval, Approval.policy_version_id == PolicyVersion.id)
            .where(Policy.state != "retired")
            .group_by(Policy.id, Policy.title, Policy.review_every_months, Policy.review_on,
                      Policy.review_reason, Policy.review_set_by, PolicyVersion.in_force_at)
            .order_by(Policy.position, Policy.id))


def reviews(session: Session, lib: Library) -> list[Review]:
    """Every policy's next review, in the console's order."""
    out = []
    for (policy_id, title, months, on, reason, set_by, in_force_at,
         approved) in session.execute(_REVIEWS.where(Policy.setting_id == lib.setting_id)):
        months = months or 12
        if on is not None:
            why = f"set by {set_by}" + (f": {reason}" if reason else "")
            out.append(Review(policy_id, title, on, why, reason, set_by))
            continue
        start = approved or lib.calendar.local_date(in_force_at)
        what = (f"its approval on {start:%-d %B %Y}" if approved
                else f"its text came into force on {start:%-d %B %Y} (no approval recorded)")
        out.append(Review(policy_id, title, start + relativedelta(months=months),
                          f"{months} months after {what}"))
    return out


def coming(found: list[Review], today: dt.date) -> list[Review]:
    """The reviews due within four weeks, or overdue: the dashboard's list."""
    return [r for r in found if r.soon_from() <= today]


def queue(svc: Services, session: Session, lib: Library, now: dt.datetime) -> int:
    """Queue the head teacher's reminders now due: four weeks before a review (unless it is past
    already) and on its day, at the setting's send time on a day one may go. Each once: its key
    names the policy, the date and which reminder."""
    cal, head = lib.calendar, svc.config.head_teacher
    messages = []
    for review in reviews(session, lib):
        for when, day in (("soon", review.soon_from()), ("due", review.due)):
            if cal.slot(day) > now or (when == "soon" and cal.slot(review.due) <= now):
                continue
            messages.append(dict(key=f"review:{review.policy_id}:{review.due}:{when}",
                                 kind="review", to_email=head.email, to_name=head.name,
                                 payload={"policy_id": review.policy_id,
                                          "due": review.due.isoformat(), "when": when}))
    if messages:
        outbox.enqueue_many(session, svc.db.insert, now, messages)
    return len(messages)


def email_context(svc: Services, session: Session, payload: dict) -> dict[str, Any] | None:
    """The head teacher's reminder; None if the review has moved since it was queued (approved
    meanwhile, or its date changed), when there is nothing to remind them of."""
    lib = svc.library(session)
    review = next((r for r in reviews(session, lib) if r.policy_id == payload["policy_id"]), None)
    if review is None or review.due.isoformat() != payload["due"]:
        return None
    return {"review": review, "when": payload["when"],
            "policy_link": f"{svc.config.setting.base_url}/admin/policies/{review.policy_id}"}


def set_review(session: Session, policy: Policy, *, on: dt.date, reason: str, actor: str,
               now: dt.datetime) -> None:
    """Bring the review forward (an early review: an incident, a change in technology) or set its
    date by hand, with why and by whom."""
    policy.review_on, policy.review_reason, policy.review_set_by = on, reason, actor
    events.record(session, "review_set", now, actor=actor, policy=policy.slug,
                  on=on.isoformat(), reason=reason)
