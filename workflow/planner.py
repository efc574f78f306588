"""What is due, and when: pure functions from a request's state, the calendar and `now`.

Stage 0 is the first reminder; stage k (1, 2, …) is the k-th follow-up, counted from the day the first
reminder went. After downtime only the latest due stage is sent (no burst of stale follow-ups), and a
person never gets two scheduled messages on the same local day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Iterator

from .calendar import Calendar

REMINDER = 0


def stage_name(stage: int) -> str:
    return "reminder" if stage == REMINDER else f"followup-{stage}"


def stage_label(stage: int) -> str:
    return "first reminder" if stage == REMINDER else f"follow-up {stage}"


@dataclass(frozen=True)
class RequestState:
    cycle_opens: dt.datetime
    start_date: dt.date | None
    stage_sent: int = -1  # highest stage handed to the outbox; -1: none yet
    reminded_at: dt.datetime | None = None  # when the first reminder reached its outcome
    last_message_at: dt.datetime | None = None


def first_reminder_due(state: RequestState, cal: Calendar) -> dt.datetime:
    """The cycle's opening, or a new starter's first day if that is later, moved to a working day."""
    due = cal.slot(cal.local_date(state.cycle_opens))
    if state.start_date is not None:
        due = max(due, cal.slot(state.start_date))
    return due


def followup_due(reminded_at: dt.datetime, stage: int, cal: Calendar) -> dt.datetime:
    days = cal.schedule.reminder_after_days[stage - 1]
    return cal.slot(cal.local_date(reminded_at) + dt.timedelta(days=days))


def overdue_at(reminded_at: dt.datetime, cal: Calendar) -> dt.datetime:
    days = cal.schedule.escalate_after_days
    return cal.slot(cal.local_date(reminded_at) + dt.timedelta(days=days))


def stage_due(state: RequestState, stage: int, cal: Calendar) -> dt.datetime | None:
    if stage == REMINDER:
        return first_reminder_due(state, cal)
    if state.reminded_at is None or stage > len(cal.schedule.reminder_after_days):
        return None
    return followup_due(state.reminded_at, stage, cal)


def due_stage(state: RequestState, cal: Calendar, now: dt.datetime) -> int | None:
    """The stage to send now, or None. Skips follow-ups that a long outage made stale."""
    if state.stage_sent < REMINDER:
        return REMINDER if first_reminder_due(state, cal) <= now else None
    if state.reminded_at is None:
        return None  # the first reminder is still in the outbox; follow-ups count from its send
    if state.last_message_at and cal.local_date(state.last_message_at) == cal.local_date(now):
        return None
    latest = None
    for stage in range(state.stage_sent + 1, len(cal.schedule.reminder_after_days) + 1):
        due = followup_due(state.reminded_at, stage, cal)
        if due > now:
            break
        latest = stage
    return latest


def next_check(state: RequestState, cal: Calendar, now: dt.datetime) -> dt.datetime | None:
    """When this request next needs looking at (stored, so an idle tick reads nothing)."""
    if state.stage_sent < REMINDER:
        return first_reminder_due(state, cal)
    if state.reminded_at is None:
        return None  # set again when the first reminder's outcome is recorded
    stage = state.stage_sent + 1
    if stage > len(cal.schedule.reminder_after_days):
        return None
    due = followup_due(state.reminded_at, stage, cal)
    if state.last_message_at and cal.local_date(due) == cal.local_date(state.last_message_at):
        due = cal.slot(cal.local_date(due) + dt.timedelta(days=1))
    return due


def next_digest_due(earliest_overdue: dt.datetime, last_digest_day: dt.date | None,
                    cal: Calendar) -> dt.datetime:
    """First when anyone becomes overdue, then every `digest_every_days` while anyone is."""
    due = cal.slot(cal.local_date(earliest_overdue))
    if last_digest_day is not None:
        due = max(due, cal.slot(last_digest_day + dt.timedelta(days=cal.schedule.digest_every_days)))
    return due


def projection(state: RequestState, cal: Calendar, start: dt.datetime,
               end: dt.datetime) -> Iterator[tuple[dt.datetime, int]]:
    """The sends this request would get between start and end if the person never confirms: what
    a tick at `start`, then one at each next check, would send. So a follow-up that fell due before
    `start` and was not sent (the scheduler was down) shows at `start`, the latest of several only,
    as the tick sends it; and never two on one day."""
    if state.stage_sent >= REMINDER and state.reminded_at is None:
        # The first reminder is queued and not yet gone: it goes with the tick at `start`.
        state = replace(state, reminded_at=start, last_message_at=start)
    now = start
    while now <= end:
        stage = due_stage(state, cal, now)
        if stage is not None:
            yield now, stage
            state = replace(state, stage_sent=stage, reminded_at=state.reminded_at or now,
                            last_message_at=now)
            continue
        later = next_check(state, cal, now)  # which keeps to one message a day
        if later is None or later <= now:  # nothing more to send (or a state no tick leaves)
            return
        now = later
