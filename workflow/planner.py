"""What is due, and when: pure functions from a request's state, the calendar and `now`.

The one home of the timing rules: the tick, `plan`, the console and the digest all ask these. Stage 0
is the first reminder; stage k (1, 2, …) is the k-th follow-up, counted from the day the first
reminder went. After downtime only the latest due stage is sent (no burst of stale follow-ups), and a
person never gets two scheduled messages on the same local day. Each reminder names a date to
confirm by (`due_date`); the person is overdue from the start of the next day (`overdue_at`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Callable, Iterator

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
    due_extended_to: dt.datetime | None = None  # an admin's extension of the date to confirm by
    named_due: dt.date | None = None  # the date to confirm by an email to them has named


# Each date is planned for a local day, then moved to a day a scheduled send may use (cal.slot):
# the *_day functions give the planned day, for saying why a send moved; the others, when it goes.

def first_reminder_day(state: RequestState, cal: Calendar) -> dt.date:
    """The cycle's opening day, or a new starter's first day if that is later."""
    return max(cal.local_date(state.cycle_opens), state.start_date or dt.date.min)


def first_reminder_due(state: RequestState, cal: Calendar) -> dt.datetime:
    due = cal.slot(cal.local_date(state.cycle_opens))
    if state.start_date is not None:
        due = max(due, cal.slot(state.start_date))
    return due


def followup_day(reminded_at: dt.datetime, stage: int, cal: Calendar) -> dt.date:
    return cal.open_days_after(cal.local_date(reminded_at),
                               cal.schedule.reminder_after_days[stage - 1])


def followup_due(reminded_at: dt.datetime, stage: int, cal: Calendar) -> dt.datetime:
    return cal.slot(followup_day(reminded_at, stage, cal))


def due_date(reminded_at: dt.datetime | None, cal: Calendar,
             extended_to: dt.datetime | None = None) -> dt.date | None:
    """The date a reminder asks the person to confirm by: `escalate_after_days` after the day of
    their first reminder, counting only days the setting is open (moved, as a send is, to a day
    one may go), or the day an admin extended it to. None while neither is known (the first reminder has not gone)."""
    if extended_to is not None:
        return cal.local_date(extended_to)
    if reminded_at is None:
        return None
    return cal.send_day(cal.open_days_after(cal.local_date(reminded_at),
                                            cal.schedule.escalate_after_days))


def overdue_at(reminded_at: dt.datetime, cal: Calendar,
               extended_to: dt.datetime | None = None) -> dt.datetime:
    """When the person becomes overdue: at the start of the day after their `due_date`, local
    time. Nobody is overdue on the date a reminder asked for, however late in that day."""
    return day_starts(due_date(reminded_at, cal, extended_to) + dt.timedelta(days=1), cal)


def due_date_before(overdue: dt.datetime, cal: Calendar) -> dt.date:
    """The date to confirm by that a stored `overdue_at` follows (its local day, less one)."""
    return cal.local_date(overdue) - dt.timedelta(days=1)


def days_past(overdue: dt.datetime, cal: Calendar, now: dt.datetime) -> int:
    """Whole local days from the date to confirm by to `now`'s: 1 on the day after it."""
    return (cal.local_date(now) - due_date_before(overdue, cal)).days


def day_starts(day: dt.date, cal: Calendar) -> dt.datetime:
    """The first moment of local `day`, in UTC. Where the clocks jump at midnight, 00:00 does not
    exist; zoneinfo then takes the offset before the jump, which is the moment the day begins."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=cal.tz).astimezone(dt.timezone.utc)


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


def queue(state: RequestState, cal: Calendar,
          now: dt.datetime) -> tuple[int | None, RequestState, dt.datetime | None]:
    """What a tick at `now` does with a request: the stage to queue (or None), the state it
    stores, and when to look at the request next. A follow-up counts as today's message as soon
    as it is queued; the first reminder's clock starts only when it has gone (see after_send)."""
    stage = due_stage(state, cal, now)
    if stage is not None:
        state = replace(state, stage_sent=stage,
                        last_message_at=state.last_message_at if stage == REMINDER else now)
    return stage, state, next_check(state, cal, now)


def after_send(state: RequestState, sent_at: dt.datetime) -> RequestState:
    """The request once a message to the person went (or failed for good) at `sent_at`: the
    first one starts the clock that follow-ups and the date to confirm by count from."""
    return replace(state, reminded_at=state.reminded_at or sent_at, last_message_at=sent_at)


def next_digest_day(earliest_overdue: dt.datetime, last_digest_day: dt.date | None,
                    cal: Calendar) -> dt.date:
    """First on the day anyone becomes overdue (the day after their date to confirm by), then
    every `digest_every_days` while anyone is."""
    day = cal.local_date(earliest_overdue)
    if last_digest_day is not None:
        day = max(day, last_digest_day + dt.timedelta(days=cal.schedule.digest_every_days))
    return day


def next_digest_due(earliest_overdue: dt.datetime, last_digest_day: dt.date | None,
                    cal: Calendar) -> dt.datetime:
    return cal.slot(next_digest_day(earliest_overdue, last_digest_day, cal))


def projection(state: RequestState, cal: Calendar, start: dt.datetime,
               end: dt.datetime) -> Iterator[tuple[dt.datetime, int]]:
    """The sends this request would get between start and end if the person never confirms: what
    a tick at `start`, then one at each next check, would send. So a follow-up that fell due before
    `start` and was not sent (the scheduler was down) shows at `start`, the latest of several only,
    as the tick sends it; and never two on one day."""
    state = _in_flight(state, start)
    now = start
    while (found := next_send(state, cal, now, end)) is not None:
        now, stage = found
        yield now, stage
        state = _sent(state, stage, now)


def next_send(state: RequestState, cal: Calendar, now: dt.datetime,
              end: dt.datetime) -> tuple[dt.datetime, int] | None:
    """The first send to a request in `state` at or after `now` and up to `end`: (when, stage)."""
    while now <= end:
        stage = due_stage(state, cal, now)
        if stage is not None:
            return now, stage
        later = next_check(state, cal, now)  # which keeps to one message a day
        if later is None or later <= now:  # nothing more to send (or a state no tick leaves)
            return None
        now = later
    return None


@dataclass(frozen=True)
class Track:
    """One of a person's requests in a timeline: its state, its policy's calendar, and the span
    of the timeline its cycle covers."""

    state: RequestState
    cal: Calendar
    start: dt.datetime
    end: dt.datetime


def together(tracks: list[Track], next_turn: Callable[[int, dt.datetime], dt.datetime],
             emailed: dt.datetime | None = None) -> list[tuple[dt.datetime, int, int, dt.datetime]]:
    """One person's sends across their requests, if they never confirm, under the rule of one
    scheduled email a day: what is due for them at one moment goes as one email; what comes due
    later on a local day they have already had one (`emailed`: earlier on the first day, before
    the timeline starts) waits until `next_turn(track, when)`. Each send is (when, which track,
    stage, when it was due)."""
    states = [_in_flight(t.state, t.start) for t in tracks]
    coming: list[tuple[dt.datetime, int, dt.datetime] | None] = []
    for state, t in zip(states, tracks):
        found = next_send(state, t.cal, t.start, t.end)
        coming.append((found[0], found[1], found[0]) if found else None)
    first: dict[dt.date, dt.datetime] = {}
    if emailed is not None and tracks:
        first[tracks[0].cal.local_date(emailed)] = emailed
    out = []
    while any(coming):
        when = min(c[0] for c in coming if c is not None)
        now = [i for i, c in enumerate(coming) if c is not None and c[0] == when]
        if first.setdefault(tracks[now[0]].cal.local_date(when), when) < when:
            for i in now:  # they have had today's email
                _, stage, due = coming[i]
                later = next_turn(i, when)
                coming[i] = (later, stage, due) if later <= tracks[i].end else None
            continue
        for i in now:
            _, stage, due = coming[i]
            out.append((when, i, stage, due))
            states[i] = _sent(states[i], stage, when)
            found = next_send(states[i], tracks[i].cal, when, tracks[i].end)
            coming[i] = (found[0], found[1], found[0]) if found else None
    return out


def _in_flight(state: RequestState, start: dt.datetime) -> RequestState:
    """A first reminder that is queued and not yet gone goes with the tick at `start`."""
    if state.stage_sent >= REMINDER and state.reminded_at is None:
        return replace(state, reminded_at=start, last_message_at=start)
    return state


def _sent(state: RequestState, stage: int, at: dt.datetime) -> RequestState:
    return after_send(replace(state, stage_sent=stage), at)
