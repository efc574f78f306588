"""What happened to the emails sent to each person, per request, as of a moment: how many went, the
first and the last, and the latest one's delivery problem. The report, the digest and the evidence
export share it, so "reminders sent" is one number wherever it is shown."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Subquery, func, select

from .models import Outbox

_TO_THE_PERSON = Outbox.kind.in_(("reminder", "followup"))
_WENT = "sent"  # the server took it


def counts(until: dt.datetime) -> Subquery:
    """Per request, the emails to the person that had gone by `until`: first and last send, and
    how many (columns request_id, first, last, n). First reminder, follow-ups and an admin's fresh
    links alike. As of a moment, so that `report --at` the moment a digest went says what it said."""
    return (select(Outbox.request_id, func.min(Outbox.sent_at).label("first"),
                   func.max(Outbox.sent_at).label("last"), func.count().label("n"))
            .where(Outbox.status == _WENT, _TO_THE_PERSON, Outbox.sent_at <= until)
            .group_by(Outbox.request_id).subquery())


def latest(until: dt.datetime) -> Subquery:
    """Per request, its latest email (queued by `until`) that has had an outcome (columns
    request_id, status, last_error). A follow-up still waiting in the outbox neither hides nor
    clears a problem."""
    newest = (select(func.max(Outbox.id)).where(_TO_THE_PERSON, Outbox.created_at <= until,
                                                Outbox.status.in_((_WENT, "retrying", "failed")))
              .group_by(Outbox.request_id))
    return (select(Outbox.request_id, Outbox.status, Outbox.last_error)
            .where(Outbox.id.in_(newest)).subquery())


def problem(status: str | None, last_error: str | None) -> str | None:
    """`retrying: <reason>` or `failed: <reason>` for the latest email, None when it went."""
    if status not in ("retrying", "failed"):
        return None
    return f"{status}: {last_error}" if last_error else status
