"""What is due, and when: pure functions from a request's state, the calendar and `now`.

Stage 0 is the first reminder; stage k (1, 2, …) is the k-th follow-up, counted from the day the first
reminder went. After downtime only the latest due stage is sent (no burst of stale follow-ups), and a
person never gets two scheduled messages on the same local day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
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
    """The sends this request would get between start and end if the person never confirms."""
    if state.stage_sent < REMINDER:
        due = max(first_reminder_due(state, cal), start)
        if due > end:
            return
        yield due, REMINDER
        reminded_at = due
    else:
        reminded_at = state.reminded_at or start
    last = len(cal.schedule.reminder_after_days)
    for stage in range(max(state.stage_sent, REMINDER) + 1, last + 1):
        due = followup_due(reminded_at, stage, cal)
        if due > end:
            return
        if stage < last and followup_due(reminded_at, stage + 1, cal) == due:
            continue  # moved onto the next one's day: due_stage sends only the latest of the two
        if due >= start:
            yield due, stage
