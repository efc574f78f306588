"""What is due and when, pure: first reminders (new starters too), follow-ups, stale follow-ups after
downtime, one message a day, next checks and the head teacher's digest."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from test_calendar import D, LONDON, calendar, utc

from workflow import planner
from workflow.planner import RequestState

OPENS_2026 = utc(2026, 9, 1, 7, 0)  # Tuesday 1 September 2026, 08:00 BST


def state(**kw) -> RequestState:
    return RequestState(**{"cycle_opens": OPENS_2026, "start_date": None, **kw})


def test_stage_names():
    assert [planner.stage_name(s) for s in (0, 1, 2)] == ["reminder", "followup-1", "followup-2"]
    assert planner.stage_label(0) == "first reminder" and planner.stage_label(2) == "follow-up 2"


def test_first_reminder_at_the_opening_moved_to_a_working_day():
    cal = calendar()
    assert planner.first_reminder_due(state(), cal) == OPENS_2026
    saturday_opening = state(cycle_opens=cal.cycle_opens(2029))  # 1 Sep 2029 is a Saturday
    assert planner.first_reminder_due(saturday_opening, cal) == utc(2029, 9, 3, 7, 0)


def test_new_starter_first_reminder_on_their_first_working_day():
    cal = calendar()
    assert planner.first_reminder_due(state(start_date=D(2026, 6, 1)), cal) == OPENS_2026
    assert planner.first_reminder_due(state(start_date=D(2026, 10, 7)), cal) == utc(2026, 10, 7, 7, 0)
    # Starting on a Saturday: the Monday after.
    assert planner.first_reminder_due(state(start_date=D(2026, 10, 10)), cal) == utc(2026, 10, 12, 7, 0)


def test_first_reminder_due_exactly_at_the_slot():
    cal = calendar()
    assert planner.due_stage(state(), cal, OPENS_2026 - dt.timedelta(seconds=1)) is None
    assert planner.due_stage(state(), cal, OPENS_2026) == planner.REMINDER
    assert planner.due_stage(state(), cal, utc(2026, 11, 1, 12, 0)) == planner.REMINDER


def test_no_follow_up_until_the_first_reminder_has_gone():
    cal = calendar()
    queued = state(stage_sent=0, reminded_at=None)
    assert planner.due_stage(queued, cal, utc(2026, 12, 1, 12, 0)) is None
    assert planner.next_check(queued, cal, OPENS_2026) is None


def test_follow_ups_counted_from_the_first_reminder():
    cal = calendar()
    reminded = state(stage_sent=0, reminded_at=OPENS_2026, last_message_at=OPENS_2026)
    first_follow_up = utc(2026, 9, 8, 7, 0)
    assert planner.next_check(reminded, cal, OPENS_2026) == first_follow_up
    assert planner.due_stage(reminded, cal, first_follow_up - dt.timedelta(minutes=1)) is None
    assert planner.due_stage(reminded, cal, first_follow_up) == 1
    after_one = state(stage_sent=1, reminded_at=OPENS_2026, last_message_at=first_follow_up)
    assert planner.next_check(after_one, cal, first_follow_up) == utc(2026, 9, 15, 7, 0)
    assert planner.due_stage(after_one, cal, utc(2026, 9, 15, 7, 0)) == 2
    done = state(stage_sent=2, reminded_at=OPENS_2026, last_message_at=utc(2026, 9, 15, 7, 0))
    assert planner.due_stage(done, cal, utc(2027, 1, 1, 12, 0)) is None
    assert planner.next_check(done, cal, utc(2026, 9, 15, 7, 0)) is None


def test_after_downtime_only_the_latest_due_follow_up_is_sent():
    cal = calendar()
    reminded = state(stage_sent=0, reminded_at=OPENS_2026, last_message_at=OPENS_2026)
    # Down from 7 to 20 September: both follow-ups are due; only the second is sent.
    assert planner.due_stage(reminded, cal, utc(2026, 9, 20, 12, 0)) == 2
    # Down from 7 to 10 September: only the first is due.
    assert planner.due_stage(reminded, cal, utc(2026, 9, 10, 12, 0)) == 1
    three = calendar(reminder_after_days=(3, 5, 30))
    assert planner.due_stage(reminded, three, utc(2026, 9, 9, 12, 0)) == 2


def test_at_most_one_message_per_local_day():
    cal = calendar(reminder_after_days=(7, 14))
    # The first reminder was held up (server down) and went on the day follow-up 1 was due.
    late = utc(2026, 9, 8, 10, 30)
    s = state(stage_sent=0, reminded_at=OPENS_2026, last_message_at=late)
    assert planner.due_stage(s, cal, utc(2026, 9, 8, 12, 0)) is None
    assert planner.due_stage(s, cal, utc(2026, 9, 8, 22, 59)) is None  # 23:59 BST, same day
    assert planner.next_check(s, cal, late) == utc(2026, 9, 9, 7, 0)
    assert planner.due_stage(s, cal, utc(2026, 9, 9, 7, 0)) == 1


def test_one_message_per_day_is_judged_by_the_local_date():
    cal = calendar(working_days_only=False, reminder_after_days=(1,))
    # 23:30 UTC on 1 Sep is 00:30 BST on 2 Sep: the same local day as an 08:00 BST follow-up.
    s = state(stage_sent=0, reminded_at=utc(2026, 9, 1, 7, 0), last_message_at=utc(2026, 9, 1, 23, 30))
    assert planner.due_stage(s, cal, utc(2026, 9, 2, 7, 0)) is None
    assert planner.next_check(s, cal, utc(2026, 9, 1, 23, 30)) == utc(2026, 9, 3, 7, 0)


def test_follow_up_over_the_bank_holiday_and_over_the_clocks_changing():
    cal = calendar()
    monday = utc(2026, 8, 24, 7, 0)  # + 7 days = Summer bank holiday
    s = state(cycle_opens=utc(2026, 8, 24, 7, 0), stage_sent=0, reminded_at=monday)
    assert planner.next_check(s, cal, monday) == utc(2026, 9, 1, 7, 0)
    # Reminded Friday 27 March (GMT): follow-up 3 April is Good Friday, 6 April Easter Monday.
    friday = utc(2026, 3, 27, 8, 0)
    s = state(cycle_opens=friday, stage_sent=0, reminded_at=friday)
    due = planner.next_check(s, cal, friday)
    assert due == utc(2026, 4, 7, 7, 0)
    assert due.astimezone(LONDON).time() == dt.time(8, 0)
    # October: reminded in BST, follow-up a week later in GMT, still 08:00 on the clock.
    s = state(cycle_opens=utc(2026, 10, 20, 7, 0), stage_sent=0, reminded_at=utc(2026, 10, 20, 7, 0))
    assert planner.next_check(s, cal, utc(2026, 10, 20, 7, 0)) == utc(2026, 10, 27, 8, 0)


def test_overdue_from_the_day_after_the_date_to_confirm_by():
    cal = calendar()
    # Asked on 1 September to confirm by 22 September: overdue from midnight (BST) after it.
    assert planner.due_date(OPENS_2026, cal) == D(2026, 9, 22)
    assert planner.overdue_at(OPENS_2026, cal) == utc(2026, 9, 22, 23, 0)
    # A reminder sent late in the day still counts by its local date.
    assert planner.due_date(utc(2026, 9, 1, 16, 0), cal) == D(2026, 9, 22)
    assert planner.overdue_at(utc(2026, 9, 1, 16, 0), cal) == utc(2026, 9, 22, 23, 0)
    # 21 days after 10 August is the bank holiday: the date is the Tuesday after.
    assert planner.due_date(utc(2026, 8, 10, 7, 0), cal) == D(2026, 9, 1)
    assert planner.overdue_at(utc(2026, 8, 10, 7, 0), cal) == utc(2026, 9, 1, 23, 0)
    # An admin's extension to Friday 30 October: overdue from Saturday's midnight, in GMT by then.
    extended = cal.slot(D(2026, 10, 30))
    assert planner.due_date(OPENS_2026, cal, extended) == D(2026, 10, 30)
    assert planner.overdue_at(OPENS_2026, cal, extended) == utc(2026, 10, 31, 0, 0)
    assert planner.due_date(None, cal, extended) == D(2026, 10, 30)
    assert planner.due_date(None, cal) is None
    # Days past the date, as the digest counts them: 1 on the day after.
    overdue = planner.overdue_at(OPENS_2026, cal)
    assert planner.due_date_before(overdue, cal) == D(2026, 9, 22)
    assert planner.days_past(overdue, cal, utc(2026, 9, 23, 7, 0)) == 1
    assert planner.days_past(overdue, cal, utc(2026, 9, 29, 7, 0)) == 7


def test_overdue_begins_at_midnight_across_the_clock_changes():
    # London: the date before the clocks go back (Sat 24 Oct 2026) and before they go forward
    # (Sat 27 Mar 2027); each day begins at its own 00:00.
    cal = calendar(working_days_only=False)
    assert planner.overdue_at(cal.slot(D(2026, 10, 1)), cal, cal.slot(D(2026, 10, 24))) \
        == utc(2026, 10, 24, 23, 0)  # Sunday 25 October 00:00 BST
    assert planner.overdue_at(cal.slot(D(2027, 3, 1)), cal, cal.slot(D(2027, 3, 27))) \
        == utc(2027, 3, 28, 0, 0)  # Sunday 28 March 00:00 GMT
    # Where the clocks jump at midnight (Havana, 8 March 2026: 00:00 becomes 01:00), the day
    # begins at the jump.
    havana = calendar(ZoneInfo("America/Havana"), working_days_only=False)
    begins = planner.overdue_at(utc(2026, 2, 1, 13, 0), havana, havana.slot(D(2026, 3, 7)))
    assert begins == utc(2026, 3, 8, 5, 0)
    assert havana.local_date(begins) == D(2026, 3, 8)
    assert havana.local_date(begins - dt.timedelta(seconds=1)) == D(2026, 3, 7)


def test_next_digest_due():
    cal = calendar()
    overdue = utc(2026, 9, 22, 7, 0)
    assert planner.next_digest_due(overdue, None, cal) == overdue
    assert planner.next_digest_due(overdue, D(2026, 9, 22), cal) == utc(2026, 9, 29, 7, 0)
    # A digest sent late (after downtime) restarts the interval from the day it went.
    assert planner.next_digest_due(overdue, D(2026, 10, 2), cal) == utc(2026, 10, 9, 7, 0)
    # Someone became overdue on Saturday (working days off): the digest goes Monday.
    assert planner.next_digest_due(utc(2026, 9, 26, 7, 0), None, cal) == utc(2026, 9, 28, 7, 0)
    # Last digest Monday 24 August: the next would fall on the bank holiday.
    assert planner.next_digest_due(utc(2026, 8, 10, 7, 0), D(2026, 8, 24), cal) == utc(2026, 9, 1, 7, 0)
    every_day = calendar(working_days_only=False, digest_every_days=1)
    assert planner.next_digest_due(overdue, D(2026, 9, 25), every_day) == utc(2026, 9, 26, 7, 0)


def test_projection_for_a_person_who_never_confirms():
    cal = calendar()
    sends = list(planner.projection(state(), cal, utc(2026, 8, 1), utc(2026, 10, 31)))
    assert sends == [(OPENS_2026, 0), (utc(2026, 9, 8, 7, 0), 1), (utc(2026, 9, 15, 7, 0), 2)]
    window = list(planner.projection(state(), cal, utc(2026, 8, 1), utc(2026, 9, 10)))
    assert window == [(OPENS_2026, 0), (utc(2026, 9, 8, 7, 0), 1)]
    after_one = state(stage_sent=1, reminded_at=OPENS_2026, last_message_at=utc(2026, 9, 8, 7, 0))
    assert list(planner.projection(after_one, cal, utc(2026, 9, 9), utc(2026, 12, 1))) == [
        (utc(2026, 9, 15, 7, 0), 2)]


def test_projection_after_downtime_shows_what_the_next_tick_catches_up_on():
    """A follow-up that fell due while the scheduler was down goes with the first tick after it,
    the latest of several only; the timeline shows it there, as the tick will send it."""
    cal = calendar()
    reminded = state(stage_sent=0, reminded_at=OPENS_2026, last_message_at=OPENS_2026)
    back = utc(2026, 9, 9, 11, 0)  # follow-up 1 was due on the 8th
    assert planner.due_stage(reminded, cal, back) == 1
    assert list(planner.projection(reminded, cal, back, utc(2026, 12, 1))) == [
        (back, 1), (utc(2026, 9, 15, 7, 0), 2)]
    much_later = utc(2026, 9, 16, 11, 0)  # both were due: only the second goes
    assert planner.due_stage(reminded, cal, much_later) == 2
    assert list(planner.projection(reminded, cal, much_later, utc(2026, 12, 1))) == [
        (much_later, 2)]
    # Caught up on the morning of the next one's day: that one waits a day.
    early = utc(2026, 9, 15, 6, 0)
    caught_up = state(stage_sent=1, reminded_at=OPENS_2026, last_message_at=early)
    assert list(planner.projection(caught_up, cal, early, utc(2026, 12, 1))) == [
        (utc(2026, 9, 16, 7, 0), 2)]


def test_projection_while_the_first_reminder_waits_in_the_outbox():
    """Queued but not sent yet (the mail server down): it goes with the next tick, and the
    follow-ups count from then."""
    cal = calendar()
    queued = state(stage_sent=0)
    start = utc(2026, 9, 2, 9, 0)
    assert list(planner.projection(queued, cal, start, utc(2026, 12, 1))) == [
        (utc(2026, 9, 9, 7, 0), 1), (utc(2026, 9, 16, 7, 0), 2)]


def test_the_timeline_counts_someone_overdue_only_once_their_first_reminder_is_on_its_way():
    """What a state adds to the timeline: its sends, and when it is overdue. A new starter whose
    first reminder is after the window is not overdue in it; one whose reminder is queued (the
    mail server down) is counted from the next tick, when it goes."""
    from types import SimpleNamespace

    from workflow import timeline

    cal = calendar()
    start, end = utc(2026, 9, 10, 8, 0), utc(2026, 10, 4)
    window = timeline._Window(SimpleNamespace(calendar=cal, slug="p"), 2026, None, OPENS_2026,
                              start, end)
    starter = state(start_date=D(2026, 10, 5))
    assert timeline._plan(window, starter) == ([], [])
    queued = state(stage_sent=0)
    sends, [overdue] = timeline._plan(window, queued)
    assert [(when, what) for when, what, *_ in sends] == [
        (utc(2026, 9, 17, 7, 0), "follow-up 1"), (utc(2026, 9, 24, 7, 0), "follow-up 2")]
    assert overdue == planner.overdue_at(start, cal) == utc(2026, 10, 1, 23, 0)
